"""What every layer shares and none owns: the data the layers hand each other, where the
caches live, atomic writes, and building C sources on first use.

- `layouts`: the token bitmask's width (`bitmask_words`) and the FSM tables (`FSMTables`);
- `files`: the cache root (`$OCTOGRAM_CACHE_DIR`), atomic file and folder writes;
- `native_build`: compile a C file once per machine, check the cached build, load it (ctypes
  library or CPython extension).
"""
