"""The flags registry shared by the absl and tensorflow stand-ins (``flag_values_dict`` like absl's)."""


class FlagValues:
    def __init__(self):
        object.__setattr__(self, "_values", {})

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def flag_values_dict(self):
        return dict(self._values)


FLAGS = FlagValues()


def _define(name, default, help=None):
    FLAGS._values[name] = default


DEFINE_string = DEFINE_integer = DEFINE_float = DEFINE_boolean = _define
