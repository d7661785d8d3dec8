"""`python -m trainables.bench`: the loop benchmark (`trainables.bench.loops`)."""

from trainables.bench.loops import main

if __name__ == "__main__":
    raise SystemExit(main())
