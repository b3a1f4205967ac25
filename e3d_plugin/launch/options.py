"""``--cfg-options KEY=VALUE``: reading the items as mmengine's ``DictAction``
reads them, and refusing those a merge would reject or misplace."""
import argparse
import re

from .errors import LaunchError, _short


_KEY_PART = re.compile(r'^[^\s=.]+$')


def check_option_key(key):
    """Raise :class:`LaunchError` unless ``key`` is a dotted config key
    (``a.b.0.c``: no empty part, no blank)."""
    if not isinstance(key, str) or not key:
        raise LaunchError(
            f'--cfg-options: empty key in {_short(key)}=...; write '
            'KEY=VALUE, e.g. train_cfg.max_epochs=5')
    if not all(_KEY_PART.match(part) for part in key.split('.')):
        raise LaunchError(
            f"--cfg-options: '{key}' is not a config key (dotted names "
            'without empty parts or blanks, e.g. model.backbone.arch)')


#: How deep ``--cfg-options`` values may nest brackets (``[[1, 2]]`` is 2).
MAX_OPTION_DEPTH = 32
_CLOSING = {'(': ')', '[': ']'}


def _check_brackets(text):
    """Raise ``ValueError`` unless the brackets of ``text`` pair up and
    nest at most :data:`MAX_OPTION_DEPTH` levels."""
    stack = []
    for char in text:
        if char in _CLOSING:
            stack.append(_CLOSING[char])
            if len(stack) > MAX_OPTION_DEPTH:
                raise ValueError(
                    f'brackets nest deeper than {MAX_OPTION_DEPTH} levels')
        elif char in ')]':
            if not stack or stack.pop() != char:
                raise ValueError(f"unbalanced '{char}'")
    if stack:
        raise ValueError(f"'{stack[-1]}' is missing")


def _encloses(text, opening):
    """Whether ``text`` starts with ``opening`` and its match is the
    last character (``(1),(2)`` is not enclosed, ``((1),(2))`` is)."""
    if not text.startswith(opening):
        return False
    depth = 0
    for index, char in enumerate(text):
        depth += char in '(['
        depth -= char in ')]'
        if depth == 0:
            return index == len(text) - 1
    return False


def _next_comma(text):
    depth = 0
    for index, char in enumerate(text):
        depth += char in '(['
        depth -= char in ')]'
        if char == ',' and depth == 0:
            return index
    return len(text)


def _parse_value(text):
    """A ``--cfg-options`` value read as mmengine's ``DictAction`` reads a
    valid one (quotes stripped, blanks removed; ``a,b`` and ``[a,b]`` are
    lists, ``(a,b)`` tuples; numbers, ``true`` / ``false`` and ``None``
    converted), without its endless recursion on ``f(a,b)``-like text:
    that stays a string."""
    from mmengine.config import DictAction
    text = text.strip('\'"').replace(' ', '')
    is_tuple = _encloses(text, '(')
    if is_tuple or _encloses(text, '['):
        text = text[1:-1]
    elif _next_comma(text) == len(text):
        return DictAction._parse_int_float_bool(text)
    values = []
    while text:
        end = _next_comma(text)
        values.append(_parse_value(text[:end]))
        text = text[end + 1:]
    return tuple(values) if is_tuple else values


def parse_cfg_option(text):
    """``(key, value)`` of one ``--cfg-options`` item ``KEY=VALUE``; the
    value is read as mmengine's ``DictAction`` reads it (numbers,
    ``true`` / ``false``, ``None``, lists ``a,b`` / ``[a,b]``, tuples
    ``(a,b)``)."""
    if '=' not in text:
        raise LaunchError(
            f"--cfg-options: '{text}' is not KEY=VALUE (e.g. "
            'train_cfg.max_epochs=5)')
    key, value = text.split('=', 1)
    check_option_key(key)
    try:
        _check_brackets(value)
    except ValueError as e:
        raise LaunchError(
            f'--cfg-options {key}: cannot read the value {_short(value)} '
            f'({e})') from None
    if value.replace(' ', '').startswith('dict('):
        raise LaunchError(
            f'--cfg-options {key}: a dict(...) value is not read; set its '
            f'keys one by one, e.g. {key}.type=...')
    return key, _parse_value(value)


def rename_option(message, option):
    """``message`` of a ``--cfg-options`` mistake, naming ``option``
    (e.g. ``--train-cfg-options``) instead where it starts with it."""
    if option and option != '--cfg-options' and message.startswith(
            '--cfg-options'):
        return option + message[len('--cfg-options'):]
    return message


class CfgOptionsAction(argparse.Action):
    """``--cfg-options KEY=VALUE ...`` as a dict, like mmengine's
    ``DictAction``, but a malformed item is a one-line usage error."""

    def __call__(self, parser, namespace, values, option_string=None):
        options = dict(getattr(namespace, self.dest, None) or {})
        for text in values or ():
            try:
                key, value = parse_cfg_option(text)
            except LaunchError as e:
                parser.error(rename_option(str(e), option_string))
            options[key] = value
        setattr(namespace, self.dest, options)


def _check_options(cfg, options):
    """Refuse options that ``merge_from_dict`` would reject with a raw
    error or silently misplace (a key under a plain value, a list index
    that does not exist, one option inside another)."""
    keys = list(options)
    for key in keys:
        check_option_key(key)
    for key in keys:
        for other in keys:
            if other != key and other.startswith(key + '.'):
                raise LaunchError(
                    f'--cfg-options: {key} and {other} both given; set '
                    f'{key} as a whole or only {other}')
    root = getattr(cfg, '_cfg_dict', cfg)  # a Config wraps a ConfigDict
    for key in keys:
        node, walked = root, []
        parts = key.split('.')
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if isinstance(node, dict):
                if part not in node:
                    break  # new keys are created by the merge
                node = node[part]
            elif isinstance(node, (list, tuple)):
                if not part.isdigit() or int(part) >= len(node):
                    raise LaunchError(
                        f"--cfg-options {key}: {'.'.join(walked)} is a list "
                        f'of {len(node)}; index it with 0..{len(node) - 1}')
                node = node[int(part)]
                if last and not isinstance(options[key], dict) and \
                        isinstance(node, dict):
                    raise LaunchError(
                        f'--cfg-options {key}: an item of the list '
                        f"{'.'.join(walked)} can only be changed key by key "
                        f'(e.g. {key}.type=...), got {_short(options[key])}')
            else:
                raise LaunchError(
                    f"--cfg-options {key}: {'.'.join(walked)} is "
                    f'{_short(node)} ({type(node).__name__}), not a dict; '
                    f"set {'.'.join(walked)} itself")
            walked.append(part)
