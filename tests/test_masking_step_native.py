"""The native matcher step (masking/matcher_step.c) against the Python step it replaces: every
token of every state, every fill, on eager, lazy, loaded and per-length FSMs with sparse and
dense rows; the targets fill_bitmask writes by address; and the fallback where it cannot be built."""

import os
import random
import shutil
import sysconfig

import numpy as np
import pytest
import torch

from octogram.common import native_build
from octogram.masking import compile_grammar
from octogram.masking import matcher_step, state_table
from octogram.masking.fsm import TokenFSM
from octogram.masking.matcher_step import pack_record

from masking_helpers import row_layout_cases
from test_masking_fsm import CALLS, RUNS, toy_vocabulary
from test_masking_grammar import JSON


def _step_module():
    if shutil.which((os.environ.get("CC") or "cc").split()[0]) is None:
        pytest.skip("no C compiler: the native step cannot be built here")
    if not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
        pytest.skip("no Python headers: the native step cannot be built here")
    module = matcher_step.load()
    assert module is not None, "matcher_step.c failed to build"
    return module


@pytest.fixture(scope="module")
def vocab():
    return toy_vocabulary(seed=2)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OCTOGRAM_CACHE_DIR", str(tmp_path))


def _fsms(vocab, grammar, monkeypatch, sparse_words, by_length):
    monkeypatch.setattr(state_table, "_SPARSE_FILL_WORDS", sparse_words)
    if by_length:
        monkeypatch.setattr(state_table, "_LENGTH_MIN_EXCEPTIONS", 0)
    eager = compile_grammar(grammar, vocab, cache=False, max_recursion_depth=3)
    lazy = compile_grammar(grammar, vocab, cache=False, lazy=True, max_recursion_depth=3)
    loaded = TokenFSM.from_tables(eager.tables(compact=True), eager.dfa, eager.index,
                                  eager.eos_token_ids)
    return eager, lazy, loaded


def _python_steps(fsm, s, tokens):
    saved, matcher_step._module = matcher_step._module, False
    try:
        return [fsm.step(s, t) for t in tokens]
    finally:
        matcher_step._module = saved


@pytest.mark.parametrize("grammar", [CALLS, JSON, RUNS], ids=["calls", "json", "runs"])
@pytest.mark.parametrize("sparse_words", [state_table._SPARSE_FILL_WORDS, 0])
@pytest.mark.parametrize("by_length", [False, True])
def test_native_step_and_fill_equal_the_python_ones(vocab, monkeypatch, grammar, sparse_words,
                                                    by_length):
    module = _step_module()
    fsms = _fsms(vocab, grammar, monkeypatch, sparse_words, by_length)
    layouts = {type(fsms[0].record(s)) for s in range(fsms[0].num_states)}
    if sparse_words == 0:
        assert layouts == {tuple}  # dense rows are exercised: (bytes, row)
    else:
        assert bytes in layouts    # sparse rows are exercised: in the record's bytes
    if by_length and grammar is RUNS:
        assert any(fsms[0].state(s).length_next is not None for s in range(fsms[0].num_states))
    words = fsms[0].words
    # every id, the padded ones and those past the bitmask, negative ones, and one past int64
    probe = list(range(-3, words * 32 + 40)) + [2**31, 2**40, 2**70, -2**70]
    rng = random.Random(7)
    for fsm in fsms:
        states = list(range(fsm.num_states)) if fsm.complete else \
            [s for s in rng.sample(range(fsm.num_states), min(12, fsm.num_states))]
        for s in states:
            expected = _python_steps(fsm, s, probe)
            assert [fsm.step(s, t) for t in probe] == expected
            record = fsm.record(s)
            raw = [module.next_state(record, t) for t in probe]  # -2: by length, in Python
            assert all(r == e or (r == -2 and e >= 0) for r, e in zip(raw, expected))
            got = torch.from_numpy(np.random.default_rng(s).integers(-2**31, 2**31 - 1, words,
                                                                     dtype=np.int32))
            fsm.fill_address(got.data_ptr(), s)
            expected = np.empty(words, np.int32)
            fsm.fill_row(expected, s)
            np.testing.assert_array_equal(got.numpy(), expected)
            assert torch.equal(got, fsm.mask_row(s))


def test_numpy_integers_and_bad_token_types(vocab):
    _step_module()
    fsm = compile_grammar(CALLS, vocab)
    m = fsm.matcher()
    first = m.allowed_tokens()[0]
    assert m.advance(np.int64(first)) and m.state == fsm.step(fsm.start_state, first)
    with pytest.raises(TypeError):
        m.advance(1.5)
    with pytest.raises(TypeError):
        m.advance("1")


def test_fill_bitmask_follows_the_tensor_when_its_memory_moves(vocab):
    """fill_bitmask caches where it writes; set_(), `.data =`, resize_() and storage resizes
    move a tensor's memory, and the next fill must write the new memory, not the old."""
    _step_module()
    fsm = compile_grammar(CALLS, vocab)
    m = fsm.matcher()
    expected = fsm.mask_row(m.state)
    moves = [
        lambda b: b.set_(torch.zeros(2, fsm.words, dtype=torch.int32)),
        lambda b: setattr(b, "data", torch.zeros(2, fsm.words, dtype=torch.int32)),
        lambda b: b.resize_(4, fsm.words),
        lambda b: b.untyped_storage().resize_(b.untyped_storage().nbytes() * 2),
    ]
    for move in moves:
        bitmask = torch.zeros(2, fsm.words, dtype=torch.int32)
        m.fill_bitmask(bitmask, 1)
        assert torch.equal(bitmask[1], expected)
        move(bitmask)
        bitmask.numpy()[:] = 0  # through numpy: no version change, only the move can be seen
        m.fill_bitmask(bitmask, 1)
        assert torch.equal(bitmask[1], expected)
        assert (bitmask[0] == 0).all()


def test_fill_bitmask_never_writes_where_a_smaller_tensor_took_the_memory(vocab):
    """The row view is kept with its address: after set_() to a 2-row tensor, row 7 does not
    exist, and asking for it is an IndexError, not a write past the new memory."""
    _step_module()
    fsm = compile_grammar(CALLS, vocab)
    m = fsm.matcher()
    bitmask = torch.zeros(8, fsm.words, dtype=torch.int32)
    m.fill_bitmask(bitmask, 7)
    bitmask.set_(torch.zeros(2, fsm.words, dtype=torch.int32))
    with pytest.raises(IndexError):
        m.fill_bitmask(bitmask, 7)
    m.fill_bitmask(bitmask, 1)
    assert torch.equal(bitmask[1], fsm.mask_row(m.state))


def test_native_entry_points_refuse_bad_arguments():
    """Records are checked before they are read: wrong types, counts that do not match the
    size, a dense record without its row or a sparse one with a row."""
    module = _step_module()
    head = lambda sparse, n_row, n_exc: np.array([9, 128, sparse, 0, n_row, n_exc], np.int64).tobytes()  # noqa: E731
    row = np.full(4, -1, np.int32).tobytes()
    dense = (head(0, 0, 1) + np.int32(0).tobytes() + np.int32(4).tobytes(), row)
    dst = torch.zeros(4, dtype=torch.int32)
    assert module.next_state(dense, 0) == 4 and module.next_state(dense, 5) == 9
    assert module.next_state(dense, 128) == -1
    with pytest.raises(ValueError, match="null"):
        module.fill(0, 4, dense)
    with pytest.raises(ValueError, match="negative"):
        module.fill(dst.data_ptr(), -1, dense)
    with pytest.raises(ValueError, match="words"):
        module.fill(dst.data_ptr(), 3, dense)
    bad = [
        (dense[0], b"\0" * 15),                              # a row of 3.75 words
        (dense[0], memoryview(row)),                         # a row that is not bytes (a view
        (dense[0], memoryview(row)[::-1]),                   # could be strided or released)
        (dense[0],),                                         # a dense record without its row
        dense[0],                                            # ... or as bare bytes
        (head(1, 0, 0), row),                                # a sparse record with a row
        head(1, 2, 0) + b"\0" * 12,                          # counts past the end
        head(1, -1, 0),                                      # a negative count
        head(0, 0, 0)[:-1] + b"\0",                          # counts that do not add up
        np.array([9, 2**40, 1, 0, 0, 0], np.int64).tobytes(),  # a vocabulary past 32 * 2**31
        head(0, 1, 0) + b"\0" * 8,                           # dense with sparse words
        b"\0" * 40,                                          # shorter than the fixed part
        [dense[0], row],                                     # not a tuple
    ]
    for record in bad:
        with pytest.raises(TypeError, match="int32|state record"):
            module.fill(dst.data_ptr(), 4, record)
        with pytest.raises(TypeError, match="int32|state record"):
            module.next_state(record, 1)
    assert module.next_state(np.array([9, 2**35, 1, 0, 0, 0], np.int64).tobytes(), 2**35 - 1) == -1


def test_finished_matcher_fills_only_eos(vocab):
    _step_module()
    fsm = compile_grammar(CALLS, vocab)
    m = fsm.matcher()
    rng = random.Random(1)
    eos = vocab.eos_token_ids[0]
    while not m.is_accepting():
        assert m.advance(rng.choice([t for t in m.allowed_tokens() if t != eos]))
    assert m.advance(eos) and m.is_finished()
    row = torch.full((fsm.words,), -1, dtype=torch.int32)
    m.fill_bitmask(row)
    assert torch.equal(row, fsm.finished_row())
    assert not m.advance(eos)


def test_without_the_native_step_the_python_one_runs(vocab, monkeypatch, tmp_path):
    """No compiler (or no Python headers, or OCTOGRAM_NATIVE=0): one warning, then the same
    masks and next states from the Python step."""
    module = _step_module()
    fsm = compile_grammar(CALLS, vocab)
    tokens = []
    m = fsm.matcher()
    rng = random.Random(2)
    rows_native = []
    for _ in range(20):
        row = torch.empty(fsm.words, dtype=torch.int32)
        m.fill_bitmask(row)
        rows_native.append(row)
        allowed = [t for t in m.allowed_tokens() if t not in vocab.eos_token_ids]
        if not allowed:
            break
        tokens.append(rng.choice(allowed))
        assert m.advance(tokens[-1])

    monkeypatch.setattr(native_build, "_loaded", {})
    monkeypatch.setattr(matcher_step, "_module", None)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("OCTOGRAM_CACHE_DIR", str(tmp_path / "empty"))
    with pytest.warns(RuntimeWarning, match="native matcher_step unavailable.*no C compiler"):
        assert matcher_step.load() is None
    m = fsm.matcher()
    for i, t in enumerate(tokens):
        row = torch.empty(fsm.words, dtype=torch.int32)
        m.fill_bitmask(row)
        assert torch.equal(row, rows_native[i])
        assert m.advance(t)
    assert matcher_step._module is False and module is not None


def test_missing_python_headers_fall_back_with_a_warning(monkeypatch, tmp_path):
    _step_module()
    monkeypatch.setattr(native_build, "_loaded", {})
    monkeypatch.setattr(native_build.sysconfig, "get_paths", lambda: {"include": str(tmp_path)})
    with pytest.warns(RuntimeWarning, match="Python's headers are not installed"):
        assert native_build.load_extension(matcher_step.SOURCE) is None


def test_extension_is_built_once_and_loaded_from_the_cache(monkeypatch, tmp_path):
    _step_module()
    monkeypatch.setenv("OCTOGRAM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native_build, "_loaded", {})
    first = native_build.load_extension(matcher_step.SOURCE)
    assert first is not None and first.__name__ == "matcher_step"
    suffix = native_build.sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    assert len(list((tmp_path / "kernels").glob(f"matcher_step-*{suffix}"))) == 1
    monkeypatch.setattr(native_build, "_loaded", {})
    monkeypatch.setattr(native_build.subprocess, "run", lambda *a, **k: pytest.fail("rebuilt"))
    assert native_build.load_extension(matcher_step.SOURCE) is not None


def test_native_fill_and_bit_test_of_every_row_layout():
    """Rows at, just past and far past the sparse limit, on either background (a toy
    vocabulary's rows are too short for an all-ones background): the native fill overwrites
    garbage exactly and the native bit test reads every token's bit."""
    module = _step_module()
    from octogram.masking.state_table import _SPARSE_FILL_WORDS, RowStore

    rng = np.random.default_rng(6)
    words = 2 * _SPARSE_FILL_WORDS + 37
    store = RowStore(words)
    cases = row_layout_cases(store, rng, _SPARSE_FILL_WORDS)
    # every token allowed by the row goes to the default state 5, the others nowhere; tokens
    # 3 and 40 (where allowed) have their own next states
    exc_tokens, exc_next = np.array([3, 40], np.int32), np.array([7, 8], np.int32)
    record = lambda source, i: pack_record(source, i, exc_tokens, exc_next, 5, words * 32)  # noqa: E731
    layouts = [type(record(store, i)) for i, _ in cases]
    assert bytes in layouts and tuple in layouts
    assert any(plan is not None and plan[0] == -1 for plan in store.fill_plans)
    loaded = RowStore.from_compact(words, store.compact())
    for i, row in cases:
        bits = np.unpackbits(row.view(np.uint8), bitorder="little").astype(bool)
        expected = np.where(bits, 5, -1)
        expected[[3, 40]] = np.where(bits[[3, 40]], [7, 8], -1)
        for source in (store, loaded):
            dst = torch.from_numpy(rng.integers(-2**31, 2**31 - 1, words, dtype=np.int32))
            module.fill(dst.data_ptr(), words, record(source, i))
            np.testing.assert_array_equal(dst.numpy(), row)
            got = [module.next_state(record(source, i), t) for t in range(words * 32)]
            np.testing.assert_array_equal(got, expected)
    dense = next(i for i, _ in cases if store.fill_plans[i] is None)
    with pytest.raises(ValueError, match="words"):
        module.fill(torch.zeros(words + 1, dtype=torch.int32).data_ptr(), words + 1, record(store, dense))


LONG = r'''
start: "say " WORDS "."
WORDS: /[a-z ]{1,400}/
'''


def _cursor_pair(fsm, max_rollback):
    args = (fsm, *fsm.step_inputs(), matcher_step.fill_new_target, max_rollback)
    return _step_module().Cursor(*args), matcher_step.PyCursor(*args)


def _same_outcome(native_call, python_call):
    """Both calls return the same value or raise the same error (type and message)."""
    outcome = []
    for call in (native_call, python_call):
        try:
            outcome.append(("ok", call()))
        except Exception as error:  # noqa: BLE001 - the error itself is compared
            outcome.append((type(error), str(error)))
    assert outcome[0] == outcome[1]
    return outcome[0]


@pytest.mark.parametrize("grammar", [CALLS, LONG, RUNS], ids=["calls", "long", "runs"])
@pytest.mark.parametrize("mode", ["eager", "lazy", "loaded"])
@pytest.mark.parametrize("max_rollback", [None, 0, 3])
def test_native_cursor_equals_the_python_cursor(vocab, monkeypatch, grammar, mode, max_rollback):
    """Random sequences of advance (allowed, refused, EOS, out of range, after the end),
    rollback (within and past the history), reset, copy, max_rollback changes and fills into
    every kind of target: the C cursor and PyCursor agree on every result, error, state and
    mask. LONG makes histories longer than the C cursor's first allocation, with and without
    dropped positions."""
    eager, lazy, loaded = _fsms(vocab, grammar, monkeypatch, state_table._SPARSE_FILL_WORDS, True)
    fsm = {"eager": eager, "lazy": lazy, "loaded": loaded}[mode]
    native_cursor, python_cursor = _cursor_pair(fsm, max_rollback)
    eos = vocab.eos_token_ids[0]
    words = fsm.words
    shared = {c: torch.zeros(3, words, dtype=torch.int32) for c in ("n", "p")}
    rng = random.Random(hash((grammar, mode, max_rollback)) & 0xFFFF)
    advanced = 0
    for step in range(700):
        op = rng.random()
        if op < 0.7:
            allowed = [] if python_cursor.finished else fsm.allowed_tokens(python_cursor.state)
            pick = rng.random()
            token = (rng.choice(allowed) if allowed and pick < 0.85 else
                     eos if pick < 0.9 else
                     rng.choice([-1, fsm.vocab_size, words * 32 + 3, 2**70, rng.randrange(fsm.vocab_size)]))
            if token == eos and rng.random() < 0.8 and not fsm.is_accepting(python_cursor.state):
                token = rng.randrange(fsm.vocab_size)
            _, ok = _same_outcome(lambda: native_cursor.advance(token), lambda: python_cursor.advance(token))
            advanced += ok
        elif op < 0.8:
            n = rng.choice([0, 1, 2, 5, 70, -1])
            _same_outcome(lambda: native_cursor.rollback(n), lambda: python_cursor.rollback(n))
        elif op < 0.82:
            native_cursor.reset(), python_cursor.reset()
        elif op < 0.86:  # carry on with copies; the originals must not see their advances
            before = (native_cursor.state, native_cursor.finished)
            native_copy, python_copy = native_cursor.copy(), python_cursor.copy()
            for _ in range(3):
                allowed = [] if python_copy.finished else fsm.allowed_tokens(python_copy.state)
                if allowed:
                    token = rng.choice(allowed)
                    assert native_copy.advance(token) == python_copy.advance(token)
            k = rng.choice([0, 1, 4, 100])
            _same_outcome(lambda: native_copy.rollback(k), lambda: python_copy.rollback(k))
            assert (native_cursor.state, native_cursor.finished) == before
            if rng.random() < 0.5:
                native_cursor, python_cursor = native_copy, python_copy
        elif op < 0.88:
            limit = rng.choice([None, 0, 2, 40, -1])

            def set_limit(cursor):
                cursor.max_rollback = limit
                return cursor.max_rollback
            _same_outcome(lambda: set_limit(native_cursor), lambda: set_limit(python_cursor))
        assert (native_cursor.state, native_cursor.finished) == (python_cursor.state, python_cursor.finished)
        expected = fsm.finished_row() if python_cursor.finished else fsm.mask_row(python_cursor.state)
        target = rng.choice(["same row", "another row", "1-d", "strided", "keyword", "negative"])
        got = {}
        for name, cursor in (("n", native_cursor), ("p", python_cursor)):
            bitmask = shared[name]
            if target == "same row":
                cursor.fill_bitmask(bitmask, 1)
                got[name] = bitmask[1].clone()
            elif target == "another row":
                cursor.fill_bitmask(bitmask, np.int64(2))
                got[name] = bitmask[2].clone()
            elif target == "keyword":
                cursor.fill_bitmask(bitmask=bitmask, index=0)
                got[name] = bitmask[0].clone()
            elif target == "negative":  # not cached: written by torch
                cursor.fill_bitmask(bitmask, -3)
                got[name] = bitmask[0].clone()
            elif target == "1-d":
                row = torch.full((words,), -1, dtype=torch.int32)
                cursor.fill_bitmask(row)
                got[name] = row
            else:  # every other word of a wider buffer: not written by address
                wide = torch.full((words, 2), 7, dtype=torch.int32)
                cursor.fill_bitmask(wide[:, 0])
                assert (wide[:, 1] == 7).all()
                got[name] = wide[:, 0].clone()
        assert torch.equal(got["n"], expected) and torch.equal(got["p"], expected), (step, target)
    assert advanced > 100


def test_native_cursor_refuses_bad_arguments_and_is_collected_in_a_cycle(vocab):
    import gc
    import weakref

    module = _step_module()
    fsm = compile_grammar(CALLS, vocab)
    m = fsm.matcher()
    bitmask = torch.zeros(2, fsm.words, dtype=torch.int32)
    with pytest.raises(TypeError, match="fill_bitmask"):
        m.fill_bitmask()
    with pytest.raises(TypeError, match="unexpected keyword"):
        m.fill_bitmask(bitmask, row=0)
    with pytest.raises(TypeError, match="fill_bitmask"):
        m.fill_bitmask(bitmask, 0, 1)
    with pytest.raises(TypeError, match="advance"):
        m.advance(tok=1)
    first = m.allowed_tokens()[0]
    assert m.advance(token_id=first) and m.state == fsm.step(fsm.start_state, first)
    m.rollback(1)
    cursor = m._cursor
    with pytest.raises(ValueError, match="row index"):
        cursor.fill_at(bitmask, -1, bitmask.data_ptr(), bitmask.untyped_storage(), bitmask.data_ptr(), 10**6)
    with pytest.raises(ValueError, match="one row"):
        cursor.fill_at(bitmask, 0, bitmask.data_ptr(), bitmask.untyped_storage(), bitmask.data_ptr(), 4)

    class Broken:  # a failed __init__ leaves a working cursor as it was
        words, start_state, eos_token_ids = fsm.words + 1, 0, ["x"]
    with pytest.raises(TypeError):
        cursor.__init__(Broken(), *fsm.step_inputs(), None, None)
    m.fill_bitmask(bitmask, 1)
    assert torch.equal(bitmask[1], fsm.mask_row(fsm.start_state)) and m.advance(first)
    m.reset()
    with pytest.raises(ValueError, match=r"rollback\(1\): only 0 tokens"):
        m.rollback(1)
    with pytest.raises(ValueError, match="max_rollback"):
        m.max_rollback = -1
    with pytest.raises(ValueError, match="max_rollback"):
        fsm.matcher(max_rollback=-2)
    blank = module.Cursor.__new__(module.Cursor)  # never initialized: errors, not crashes
    for call in (lambda: blank.advance(1), lambda: blank.state, lambda: blank.finished,
                 lambda: blank.fill_bitmask(bitmask, 0), lambda: blank.rollback(0), blank.reset,
                 blank.copy, lambda: blank.max_rollback,
                 lambda: blank.fill_at(bitmask, 0, 1, bitmask.untyped_storage(), 1, 10**6)):
        with pytest.raises(RuntimeError, match="not initialized"):
            call()
    with pytest.raises(TypeError):
        module.Cursor(fsm, (), fsm.record, fsm.next_state, None, None)  # records must be a list
    # matcher -> cursor -> cached bitmask -> matcher: the collector must see the cursor's references
    m.fill_bitmask(bitmask, 0)
    bitmask.owner = m
    gone = weakref.ref(m)
    del m, bitmask, cursor
    gc.collect()
    assert gone() is None


def test_fill_bitmask_never_writes_past_a_storage_shrunk_in_place(vocab):
    """untyped_storage().resize_() can hand a smaller block back at the same address, so the
    bitmask's data pointer matches the cached one: the kept storage's size is checked too, and
    a row that no longer fits goes back to the fallback instead of being written. (A stand-in
    storage makes the shrink certain; real allocators give the same address only sometimes.)"""
    _step_module()
    fsm = compile_grammar(CALLS, vocab)

    class Storage:
        def __init__(self, nbytes):
            self.size = nbytes

        def nbytes(self):
            return self.size

    row_bytes = 4 * fsm.words
    for make in (_step_module().Cursor, matcher_step.PyCursor):
        fallbacks = []
        cursor = make(fsm, *fsm.step_inputs(), lambda c, b, i: fallbacks.append(i), None)
        bitmask = torch.full((8, fsm.words), 7, dtype=torch.int32)
        storage = Storage(8 * row_bytes)
        cursor.fill_at(bitmask, 7, bitmask.data_ptr(), storage, bitmask[7].data_ptr(), 8 * row_bytes)
        assert torch.equal(bitmask[7], fsm.mask_row(fsm.start_state))
        bitmask[7] = 7
        cursor.fill_bitmask(bitmask, 7)  # the cached target, still whole: written by address
        assert torch.equal(bitmask[7], fsm.mask_row(fsm.start_state)) and fallbacks == []
        bitmask[7] = 7
        storage.size = 7 * row_bytes     # shrunk in place, same address
        cursor.fill_bitmask(bitmask, 7)
        assert fallbacks == [7] and (bitmask[7] == 7).all(), make


def _python_matcher(fsm):
    m = fsm.matcher()
    m._use(matcher_step.PyCursor(fsm, *fsm.step_inputs(), matcher_step.fill_new_target, None))
    return m


def test_copies_are_independent_and_shared_nothing_but_the_fsm(vocab):
    import copy

    _step_module()
    fsm = compile_grammar(CALLS, vocab)
    for m in (fsm.matcher(max_rollback=5), _python_matcher(fsm)):
        rng = random.Random(3)
        for _ in range(3):
            assert m.advance(rng.choice([t for t in m.allowed_tokens() if t not in vocab.eos_token_ids]))
        for twin in (m.copy(), copy.copy(m), copy.deepcopy(m)):
            assert twin.fsm is m.fsm and twin.state == m.state and twin.max_rollback == m.max_rollback
            assert type(twin._cursor) is type(m._cursor)
            before = m.state
            twin.rollback(3)
            assert twin.state == fsm.start_state and m.state == before
            with pytest.raises(ValueError):
                twin.rollback(1)
            m.rollback(1)
            assert m.advance(fsm.allowed_tokens(m.state)[0])


def test_memory_counts_the_native_records(vocab, monkeypatch):
    """A loaded FSM's records copy the exceptions of its tables, so each made record adds its
    whole size; a compiled FSM's states read their exceptions from their records, so those
    are counted once."""
    _step_module()
    eager, _, loaded = _fsms(vocab, JSON, monkeypatch, state_table._SPARSE_FILL_WORDS, False)
    before = loaded.memory_bytes()
    records = [loaded.record(s) for s in range(loaded.num_states)]
    packed = sum(len(r if type(r) is bytes else r[0]) for r in records)
    assert loaded.memory_bytes() - before >= packed > 0
    exceptions = sum(eager.state(s).exc_tokens.nbytes * 2 for s in range(eager.num_states))
    assert all(not eager.state(s).exc_tokens.flags.owndata for s in range(eager.num_states))
    assert eager.memory_bytes() == eager._rows.nbytes() + 16 * eager.num_states + sum(
        len(r if type(r) is bytes else r[0]) for r in eager.step_inputs().records) + sum(
        8 * len(eager.state(s).length_next or ()) for s in range(eager.num_states))
    assert exceptions > 0


def test_both_cursors_refuse_the_same_bad_arguments_with_the_same_errors(vocab):
    """Each bad argument gives the same exception type and message from the C cursor and
    PyCursor: TypeError for a token, count, limit or row that is not an integer; ValueError
    for a count or limit out of range (however large) and for a fill target that is not an
    int32 tensor of the mask's width (as apply_token_bitmask_); IndexError for a row outside
    the bitmask."""
    fsm = compile_grammar(CALLS, vocab)
    words = fsm.words
    bitmask = torch.zeros(2, words, dtype=torch.int32)

    def set_limit(value):
        def call(cursor):
            cursor.max_rollback = value
            return cursor.max_rollback
        return call

    cases = {
        TypeError: [
            lambda c: c.advance(1.5), lambda c: c.advance("1"), lambda c: c.advance(None),
            lambda c: c.rollback(1.5), lambda c: c.rollback("1"), lambda c: c.rollback(None),
            lambda c: c.fill_bitmask(bitmask, "0"), lambda c: c.fill_bitmask(bitmask, 1.5),
            lambda c: c.fill_bitmask(bitmask, (0,)), lambda c: c.fill_bitmask(bitmask, slice(0, 1)),
            set_limit("3"), set_limit(1.5), set_limit([]),
        ],
        ValueError: [
            lambda c: c.rollback(-1), lambda c: c.rollback(1), lambda c: c.rollback(2**70),
            lambda c: c.rollback(-2**70), lambda c: c.rollback(np.int64(5)),
            set_limit(-1), set_limit(-2**70),
            lambda c: c.fill_bitmask(None), lambda c: c.fill_bitmask([0] * words),
            lambda c: c.fill_bitmask(np.zeros(words, np.int32)),
            lambda c: c.fill_bitmask(torch.zeros(words, dtype=torch.int64)),
            lambda c: c.fill_bitmask(torch.zeros(words)),
            lambda c: c.fill_bitmask(torch.zeros(words + 1, dtype=torch.int32)),
        ],
        IndexError: [lambda c: c.fill_bitmask(bitmask, 99), lambda c: c.fill_bitmask(bitmask, -99),
                     lambda c: c.fill_bitmask(bitmask, 2**70), lambda c: c.fill_bitmask(bitmask, -2**70)],
    }
    for expected, calls in cases.items():
        for call in calls:
            native_cursor, python_cursor = _cursor_pair(fsm, None)
            kind, _ = _same_outcome(lambda: call(native_cursor), lambda: call(python_cursor))
            assert kind is expected
            # a refused argument changes nothing
            assert (native_cursor.state, native_cursor.finished, native_cursor.max_rollback) == \
                (fsm.start_state, False, None)
    # what is taken is taken alike: numpy integers, and a limit past sys.maxsize
    native_cursor, python_cursor = _cursor_pair(fsm, None)
    first = fsm.allowed_tokens(fsm.start_state)[0]
    assert _same_outcome(lambda: native_cursor.advance(np.int32(first)),
                         lambda: python_cursor.advance(np.int32(first))) == ("ok", True)
    assert _same_outcome(lambda: native_cursor.rollback(np.int64(1)),
                         lambda: python_cursor.rollback(np.int64(1))) == ("ok", None)
    import sys
    assert _same_outcome(lambda: set_limit(2**70)(native_cursor),
                         lambda: set_limit(2**70)(python_cursor)) == ("ok", sys.maxsize)
