"""Report writers: each turns computed results into a folder of PNGs, a JSON file and an ``index.html``."""
