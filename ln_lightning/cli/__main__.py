"""``python -m ln_lightning.cli``: the same as the ``ln-fit`` command."""

from ln_lightning.cli import main

main()
