"""``python -m ln_lightning.sweep``: the same as ``ln-fit-sweep``."""

from ln_lightning.sweep import main

main()
