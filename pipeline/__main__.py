"""`python -m pipeline` is the same as the `pipeline` command."""

from pipeline.cli import main

if __name__ == "__main__":  # not again in a worker process, which imports this module under another name
    main()
