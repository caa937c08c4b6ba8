"""`python -m mlic ...` — the entry torchrun uses: `torchrun --nproc-per-node N -m mlic train --arch A`."""

from mlic.cli import main

main()
