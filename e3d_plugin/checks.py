"""Checks of constructor arguments, each failing with one clear line.

Every check raises :class:`ValueError` with ``'<owner>: <name> must be
<what it accepts>, got <value>'``, so a config typo (a string where a number
belongs, a number where a list belongs, NaN, ``True`` for ``1``, ``'false'``
for ``False``) stops with a message naming the argument instead of turning
into a silently different value. Nothing here is on a hot path.

Booleans must be ``True`` or ``False``: a string is refused, not parsed
(``'false'`` is a non-empty string, and ``bool('false')`` is True), and so is
``0`` / ``1``. Integers must be ints (``16.0`` and ``True`` are refused);
real numbers must be finite (NaN and infinity are refused).
"""
import math
import numbers


def short_repr(value, limit=60):
    """``repr(value)`` cut to about ``limit`` characters, for messages (a
    value read from a file may be huge or deeply nested)."""
    try:
        text = repr(value)
    except (RecursionError, MemoryError, ValueError):
        # ValueError: an int with more digits than repr allows
        return f'<{type(value).__name__}>'
    if len(text) > limit:
        text = text[:limit - 3] + '...'
    return text


def is_int(value):
    """Whether ``value`` is an integer (bools excluded)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value):
    """Whether ``value`` is a finite real number (bools excluded)."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def _fail(owner, name, what, value):
    prefix = f'{owner}: ' if owner else ''
    raise ValueError(
        f'{prefix}{name} must be {what}, got {short_repr(value)}')


def _bounds(low, high, integer):
    if low is not None and high is not None:
        return f' in [{low}, {high}]'
    if low is not None:
        return f' >= {low}'
    if high is not None:
        return f' <= {high}'
    return ''


def check_int(owner, name, value, low=None, high=None, allow_none=False):
    """``value`` as an int, checked against ``[low, high]``."""
    if value is None and allow_none:
        return None
    if not is_int(value) or (low is not None and value < low) or (
            high is not None and value > high):
        what = f'an integer{_bounds(low, high, True)}'
        _fail(owner, name, what + (' or None' if allow_none else ''), value)
    return int(value)


def check_number(owner, name, value, low=None, positive=False):
    """``value`` as a finite float (``> 0`` with ``positive``, ``>= low``
    with ``low``)."""
    if not is_number(value) or (positive and value <= 0) or (
            low is not None and value < low):
        what = 'a finite number'
        if positive:
            what = 'a finite positive number'
        elif low is not None:
            what += f' >= {low}'
        _fail(owner, name, what, value)
    return float(value)


def check_bool(owner, name, value):
    """``value`` if it is ``True`` or ``False``; strings and numbers are
    refused (``'false'`` would otherwise read as True)."""
    if isinstance(value, bool):
        return value
    # a numpy boolean scalar is no bool subclass; accept it by its dtype
    dtype = getattr(value, 'dtype', None)
    if getattr(dtype, 'kind', None) == 'b' and getattr(value, 'shape',
                                                       None) == ():
        return bool(value)
    what = 'True or False'
    if isinstance(value, str):
        what += ' (a boolean, not the string; write it without quotes)'
    _fail(owner, name, what, value)


def check_list(owner, name, value, item, what, allow_empty=False):
    """``value`` (a list or tuple, not a string) as a tuple of
    ``item(element)``; ``item`` returns the converted element or raises
    ValueError / TypeError; ``what`` describes an accepted element."""
    if not isinstance(value, (list, tuple)) or (not value
                                                and not allow_empty):
        _fail(owner, name,
              f'a {"" if allow_empty else "non-empty "}list of {what}', value)
    items = []
    for element in value:
        try:
            items.append(item(element))
        except (ValueError, TypeError):
            _fail(owner, name, f'a list of {what} ({short_repr(element)} is '
                  'not one)', value)
    return tuple(items)


def image_hw(image_size, owner='', name='image_size'):
    """``(height, width)`` of an image size given as one positive int or a
    ``(height, width)`` pair of them."""
    if type(image_size) is int and image_size >= 1:  # the common case, fast
        return image_size, image_size
    pair = None
    if is_int(image_size):
        pair = (image_size, image_size)
    elif isinstance(image_size, (list, tuple)) and len(image_size) == 2:
        pair = tuple(image_size)
    if pair is None or not all(is_int(v) and v >= 1 for v in pair):
        _fail(owner, name, 'a positive integer or a (height, width) pair of '
              'positive integers', image_size)
    return int(pair[0]), int(pair[1])


__all__ = ['short_repr', 'is_int', 'is_number', 'check_int', 'check_number',
           'check_bool', 'check_list', 'image_hw']
