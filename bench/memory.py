"""Benchmark 6, memory: peak RSS of one web process with 50 dashboards connected and the size data loaded.

It is measured in the same run as benchmark 4 (the data takes a minute to load), so this runs bench.size:

    python -m bench.memory [--databases sqlite,postgres] [--chats 100000] [--messages 1000000]
"""

from .size import main

if __name__ == "__main__":
    main()
