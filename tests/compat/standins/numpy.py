"""Stand-in for numpy: only ``arange(start, stop[, step])``, which W&B's argparse example uses."""


def arange(start, stop=None, step=1):
    if stop is None:
        start, stop = 0, start
    values = []
    value = start
    while value < stop:
        values.append(value)
        value += step
    return values
