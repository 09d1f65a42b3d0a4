"""``python -m kernelgen.verify``: see :mod:`kernelgen.verify`."""

from . import main

__all__: list[str] = []

if __name__ == "__main__":
    raise SystemExit(main())
