"""``python -m mirror_model.cli`` (what ``torchrun -m`` launches on every rank)."""

from . import main

main()
