"""Interleaved comparisons for the benches: persistent workers, rounds, spread.

A bench that compares two things (models, layouts, implementations) on a
shared machine must not time them one after the other: a load swing during
one of them decides the result. Here each thing lives in its own long-lived
worker process, and the parent asks them in turn for a short measurement,
round after round, swapping the order every round (A B, B A, A B, ...). A
ratio is formed per round from measurements taken seconds apart, so load that
comes and goes hits both sides of most rounds alike, and the spread of the
per-round ratios says how far the result can be trusted.

Parent side: :class:`Worker` (one subprocess speaking JSON lines),
:func:`interleave` (the rounds), :func:`spread` (median, quartiles, range of
the per-round ratios) and :func:`verdict` (a sign test over the rounds).
Worker side: :func:`serve` (the request loop). Benches import this module
as ``_interleave`` (it sits next to them; scripts run from ``bench/`` find it
on ``sys.path``).
"""
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile

#: Marks a worker's replies among anything else it prints on stdout.
REPLY_TAG = 'INTERLEAVE_REPLY '


class WorkerError(RuntimeError):
    """A worker failed; ``user_error`` when the cause is the bench's input
    (e.g. a batch that does not fit the device), which the bench reports as
    one ``error:`` line."""

    def __init__(self, message, user_error=False):
        super().__init__(message)
        self.user_error = user_error


class Worker:
    """One measurement subprocess, driven by requests (JSON lines on its
    stdin) and answering each with one tagged JSON line on its stdout.

    Its stderr goes to a temporary file (a pipe nobody reads could fill up
    and block it), shown when it fails.
    """

    def __init__(self, name, cmd, cwd=None, env=None):
        self.name = name
        self._stderr = tempfile.TemporaryFile(mode='w+')
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            bufsize=1)
        self._other = []

    def _stderr_tail(self, lines=20):
        self._stderr.flush()
        self._stderr.seek(0)
        text = self._stderr.read().splitlines()
        return '\n'.join(self._other[-lines:] + text[-lines:])

    def receive(self):
        """The next reply; raises :class:`WorkerError` if the worker
        reported an error or died."""
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                raise WorkerError(
                    f'{self.name}: worker exited (code {self.proc.returncode})'
                    f' without replying:\n{self._stderr_tail()}')
            if line.startswith(REPLY_TAG):
                reply = json.loads(line[len(REPLY_TAG):])
                if 'error' in reply:
                    message = f'{self.name}: {reply["error"]}'
                    user_error = reply.get('user_error', False)
                    if not user_error:
                        # Its traceback follows the reply on its stderr.
                        try:
                            self.proc.wait(timeout=10)
                        except subprocess.TimeoutExpired:
                            pass
                        message += '\n' + self._stderr_tail()
                    raise WorkerError(message, user_error)
                return reply
            # Libraries may print on stdout; keep it for a failure report.
            self._other.append(line.rstrip('\n'))

    def request(self, **message):
        """Send one request and wait for its reply."""
        try:
            self.proc.stdin.write(json.dumps(message) + '\n')
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # receive() reports the dead worker with its stderr
        return self.receive()

    def kill(self):
        """Stop the worker now (the parent is giving up)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        """Ask the worker to exit; kill it if it does not within 30 s."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


def start_workers(names, cmd_of, cwd=None):
    """One :class:`Worker` per name (``cmd_of(name)`` its command line),
    started together so that their imports overlap; each must first reply
    when it is ready."""
    workers = {}
    try:
        for name in names:
            workers[name] = Worker(name, cmd_of(name), cwd=cwd,
                                   env=dict(os.environ))
        ready = {name: w.receive() for name, w in workers.items()}
    except BaseException:
        for w in workers.values():
            w.kill()
            w.close()
        raise
    return workers, ready


def serve(handle):
    """Worker loop: announce readiness, then answer each request line with
    ``handle(request)``. A :class:`WorkerError` (or any exception) becomes an
    error reply, after which the worker exits."""

    def reply(obj):
        sys.stdout.write(REPLY_TAG + json.dumps(obj) + '\n')
        sys.stdout.flush()

    try:
        reply(handle(dict(op='ready')))
        # readline, not iteration, so that each request is answered as soon
        # as its line arrives.
        for line in iter(sys.stdin.readline, ''):
            if line.strip():
                reply(handle(json.loads(line)))
    except WorkerError as e:
        reply(dict(error=str(e), user_error=e.user_error))
        return 2
    except Exception as e:  # noqa: BLE001  (the parent reports it)
        reply(dict(error=f'{type(e).__name__}: {e}'))
        raise
    return 0


def interleave(workers, rounds, request, on_round=None):
    """Run ``rounds`` rounds; in each, ask every worker in turn for
    ``request`` (a dict), reversing the order every other round so that
    neither side is always first. Returns one ``{name: reply}`` per round;
    ``on_round(index, replies)``, if given, sees each round as it ends."""
    names = list(workers)
    results = []
    for index in range(rounds):
        order = names if index % 2 == 0 else names[::-1]
        results.append({
            name: workers[name].request(**request) for name in order})
        if on_round is not None:
            on_round(index, results[-1])
    return results


def spread(values, threshold=1.0):
    """Median, quartiles (inclusive method: they stay within the data),
    min, max and count of ``values``, and how many lie above and below
    ``threshold`` (what :func:`verdict` tests)."""
    values = sorted(values)
    if len(values) > 1:
        q1, _, q3 = statistics.quantiles(values, n=4, method='inclusive')
    else:
        q1 = q3 = values[0]
    return dict(median=statistics.median(values), q1=q1, q3=q3,
                min=values[0], max=values[-1], n=len(values),
                threshold=threshold,
                above=sum(v > threshold for v in values),
                below=sum(v < threshold for v in values))


#: Significance level of :func:`verdict`'s sign test.
ALPHA = 0.05


def sign_test_p(above, below):
    """Two-sided p-value of a sign test: the chance that at least
    ``max(above, below)`` of ``above + below`` rounds fall on one side if
    either side were as likely in every round."""
    n = above + below
    if n == 0:
        return 1.0
    k = max(above, below)
    tail = sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n
    return min(1.0, 2 * tail)


def min_rounds(alpha=ALPHA):
    """Fewest rounds with which :func:`verdict` can answer at all (every
    round on the same side)."""
    n = 1
    while sign_test_p(n, 0) >= alpha:
        n += 1
    return n


def verdict(stats, alpha=ALPHA):
    """``'above'`` or ``'below'`` when the per-round ratios summed up in
    ``stats`` (from :func:`spread`) lie on that side of its threshold in
    more rounds than chance explains (sign test, two-sided, p < ``alpha``),
    else None: the measurement cannot tell.

    The test counts rounds, not their size, so that one round disturbed by
    another process, however much, weighs as one round: with 9 rounds 8
    must agree, with 7 all of them (p = 0.039, 0.016). Rounds equal to the
    threshold count for neither side.
    """
    above, below = stats['above'], stats['below']
    if sign_test_p(above, below) >= alpha:
        return None
    return 'above' if above > below else 'below'


def verdict_basis(stats):
    """What :func:`verdict` judged by, as ``(words, p, alpha)``: e.g.
    ``('8 of 9 rounds', 0.039, 0.05)`` (the rounds on the side that has
    more of them), and the sign test's p-value and level."""
    return (f'{max(stats["above"], stats["below"])} of {stats["n"]} rounds',
            sign_test_p(stats['above'], stats['below']), ALPHA)


def format_spread(stats, digits=2):
    """``median [q1..q3] (min..max, n rounds)`` as one short string."""
    f = f'.{digits}f'
    return (f'{stats["median"]:{f}} [IQR {stats["q1"]:{f}}..{stats["q3"]:{f}}'
            f'] (min..max {stats["min"]:{f}}..{stats["max"]:{f}}, '
            f'{stats["n"]} rounds)')
