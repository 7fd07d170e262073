"""The command-line layer: thin typer commands over the library, one file each."""
