"""``python -m paperzoo`` (and ``torchrun -m paperzoo train ...``)."""
from .cli import main

main()
