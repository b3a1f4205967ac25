"""The cost model's ``activation_bytes`` against the memory of real
training steps.

    python bench/memory_check.py [--device cuda|cpu] [--archs E3D-S E3D-M
        E3D-L] [--batches 1 2 4 8] [--frames T --size S] [--json FILE]

For each preset at the clip it was searched for (E3D-S 13x160x160, E3D-M
16x224x224, E3D-L 16x312x312; ``--frames`` / ``--size`` override all) and
each batch: the backbone in train mode (float32, contiguous) with an SGD
optimizer with momentum takes one untimed step (so that the momentum
buffers and the library's workspaces exist), then one measured step:

* ``predicted``: ``batch x activation_bytes`` of
  :func:`e3d_plugin.compute_cost` (float32, the structure alone);
* ``held``: on CUDA, ``torch.cuda.memory_allocated`` after the forward
  minus before the clip was made (what the step keeps for its backward:
  the clip, the saved tensors, the output); on CPU, the bytes of every
  distinct storage autograd saves (``saved_tensors_hooks``), parameters
  excluded, as the tests count them;
* ``peak`` (CUDA only): ``torch.cuda.max_memory_allocated`` of the step
  (forward, backward, optimizer step) minus the memory held before it
  (weights, momentum), i.e. what a batch adds at its peak;
* ``base``: the weights and momentum buffers (CUDA: allocated before the
  step).

It prints one line per preset and batch and the ratios held / predicted and
peak / predicted: how to turn a GPU's memory into an ``activation_bytes``
budget (README, "Cost model").
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from _args import (bounded_int, check_device,  # noqa: E402
                   check_output_option, fail, write_json)
from e3d_plugin.launch import OneLineArgumentParser  # noqa: E402

# The clip (frames, size) each preset was searched for.
CLIPS = {'E3D-XS': (8, 64), 'E3D-S': (13, 160), 'E3D-M': (16, 224),
         'E3D-L': (16, 312)}
MIB = 2**20


def parse_args(argv=None):
    """Command-line options (sizes bounded: a bad one is one line)."""
    parser = OneLineArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda',
                        help='cuda (allocator figures) or cpu (saved-tensor '
                        'count only)')
    parser.add_argument('--archs', nargs='+', choices=sorted(CLIPS),
                        default=['E3D-S', 'E3D-M', 'E3D-L'])
    parser.add_argument('--batches', nargs='+', type=bounded_int(1, 256),
                        default=[1, 2, 4, 8])
    parser.add_argument('--frames', type=bounded_int(1, 256),
                        help='frames of every clip (default: each preset\'s)')
    parser.add_argument('--size', type=bounded_int(8, 1024),
                        help='height and width of every clip (default: each '
                        'preset\'s)')
    parser.add_argument('--json', metavar='FILE',
                        help='also write the rows to FILE as JSON')
    args = parser.parse_args(argv)
    check_output_option(parser, args.json)
    return args


def saved_bytes(model, clip):
    """Bytes of the distinct storages autograd saves in a forward of
    ``model`` on ``clip`` (parameters and buffers excluded), and the
    output."""
    from e3d_plugin.traffic import saved_tensors
    with saved_tensors(model) as saved:
        out = model(clip)
    return sum(saved.values()), out


def measure(arch, frames, size, batch, device):
    """One preset and batch: a dict of the figures (bytes)."""
    import torch

    from e3d_plugin import E3D, compute_cost
    torch.manual_seed(0)
    model = E3D(arch=arch).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    cost = compute_cost(model.structure, size, frames)
    row = dict(arch=arch, frames=frames, size=size, batch=batch,
               predicted=batch * cost.activation_bytes)

    def step(clip):
        optimizer.zero_grad(set_to_none=True)
        model(clip).mean().backward()
        optimizer.step()

    def new_clip():
        return torch.randn(batch, 3, frames, size, size, device=device)

    on_cuda = device.type == 'cuda'
    step(new_clip())  # momentum buffers, workspaces
    optimizer.zero_grad(set_to_none=True)
    if not on_cuda:
        held, out = saved_bytes(model, new_clip())
        out.mean().backward()
        row['held'] = held
        return row
    cuda = torch.cuda
    cuda.synchronize(device)
    base = cuda.memory_allocated(device)
    cuda.reset_peak_memory_stats(device)
    clip = new_clip()
    out = model(clip)
    cuda.synchronize(device)
    row['held'] = cuda.memory_allocated(device) - base
    out.mean().backward()
    del out, clip
    optimizer.step()
    cuda.synchronize(device)
    row['peak'] = cuda.max_memory_allocated(device) - base
    row['base'] = base
    return row


def main(argv=None):
    args = parse_args(argv)
    import torch

    import e3d_plugin  # noqa: F401  (bridges the mmaction2 wheel's gaps)
    try:
        device = torch.device(check_device(args.device))
    except ValueError as e:
        return fail(e)
    rows = []
    print(f'{"arch":<7}{"clip":>12}{"batch":>6}{"predicted MiB":>15}'
          f'{"held MiB":>10}{"held/pred":>10}{"peak MiB":>10}'
          f'{"peak/pred":>10}{"base MiB":>10}')
    for arch in args.archs:
        frames, size = CLIPS[arch]
        frames = args.frames or frames
        size = args.size or size
        for batch in args.batches:
            try:
                row = measure(arch, frames, size, batch, device)
            except torch.cuda.OutOfMemoryError:
                print(f'{arch:<7}{frames:>4}x{size}x{size}{batch:>6}  out '
                      'of memory')
                torch.cuda.empty_cache()
                continue
            rows.append(row)
            pred = row['predicted']
            peak = row.get('peak')
            print(f'{arch:<7}{frames:>4}x{size}x{size:<4}{batch:>5}'
                  f'{pred / MIB:>15.1f}{row["held"] / MIB:>10.1f}'
                  f'{row["held"] / pred:>10.3f}'
                  + (f'{peak / MIB:>10.1f}{peak / pred:>10.3f}'
                     f'{row["base"] / MIB:>10.1f}' if peak is not None
                     else f'{"-":>10}{"-":>10}{"-":>10}'))
            if device.type == 'cuda':
                torch.cuda.empty_cache()
    if args.json:
        write_json(args.json, dict(device=str(device),
                                   torch=torch.__version__, rows=rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
