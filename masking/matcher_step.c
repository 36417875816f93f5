/* The decode-step hot path of a token FSM, as a CPython extension (built by common/native_build.py).
 *
 * A step in Python is a dozen attribute lookups and calls; here it is one call. The Python
 * versions (TokenFSM.step, RowStore.fill, matcher_step.PyCursor) give the same results and
 * run where this cannot be built; tests compare the two.
 *
 * Cursor is one sequence's position (Matcher's state): its history of states, advance, rollback
 * and fill_bitmask, so that a decode step is two C calls and no Python frame.
 *
 * A state's record is made once per state by matcher_step.py (pack_record). Its fixed part
 * and arrays sit in one bytes object, so a step reads a few adjacent cache lines instead of
 * chasing a tuple of Python objects (on the benchmark's walks those misses were half of a
 * fill's time):
 *   int64  default      next state of allowed tokens without an exception; -1: none; -2: it
 *                       follows the token's byte length (Python looks it up)
 *   int64  vocab_size   tokens at or past it are never allowed
 *   int64  sparse       1: the row is the background word except at n_row words
 *   int64  background
 *   int64  n_row        sparse rows: how many words differ from the background
 *   int64  n_exc        how many tokens have their own next state
 *   int32  row_words[n_row], row_values[n_row]    (sparse rows, sorted by word)
 *   int32  exc_tokens[n_exc], exc_next[n_exc]      (sorted by token)
 * A state with a sparse row has just those bytes as its record; one with a dense row has
 * (bytes, the row's int32 words as bytes), the row being shared by the states that have it.
 * Bytes, not memoryviews: they cannot be strided or released under the reader.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

enum { HEAD_FIELDS = 6 };

typedef struct {
    long long default_next, vocab_size;
    int sparse;
    int32_t background;
    const int32_t *row, *values;  /* dense: the row's words; sparse: word indices, values */
    Py_ssize_t n_row;             /* dense: words in the row; sparse: differing words */
    const int32_t *exc_tokens, *exc_next;
    Py_ssize_t n_exc;
} Record;

/* The int32 words held by a bytes object, or NULL (with an exception) for anything else. */
static const int32_t *words_of(PyObject *bytes, Py_ssize_t *count) {
    const char *p = PyBytes_CheckExact(bytes) ? PyBytes_AS_STRING(bytes) : NULL;
    if (p == NULL || PyBytes_GET_SIZE(bytes) % 4 || ((uintptr_t)p & 3)) {
        PyErr_SetString(PyExc_TypeError, "matcher_step: expected bytes of aligned int32 words");
        return NULL;
    }
    *count = PyBytes_GET_SIZE(bytes) / 4;
    return (const int32_t *)p;
}

static int bad_record(const char *why) {
    PyErr_Format(PyExc_TypeError, "matcher_step: not a state record (%s)", why);
    return -1;
}

/* Read a record (see the layout above), checking its sizes; 0 on success. */
static int record_of(PyObject *rec, Record *r) {
    PyObject *packed = rec, *dense = NULL;
    if (PyTuple_CheckExact(rec)) {
        if (PyTuple_GET_SIZE(rec) != 2) return bad_record("a dense row's record is (bytes, row)");
        packed = PyTuple_GET_ITEM(rec, 0);
        dense = PyTuple_GET_ITEM(rec, 1);
    }
    if (!PyBytes_CheckExact(packed)) return bad_record("expected bytes");
    Py_ssize_t len = PyBytes_GET_SIZE(packed);
    const char *p = PyBytes_AS_STRING(packed);
    long long head[HEAD_FIELDS];
    if (len < (Py_ssize_t)sizeof head) return bad_record("too short");
    if ((uintptr_t)p & 3) return bad_record("its arrays are not aligned");
    memcpy(head, p, sizeof head);
    r->default_next = head[0];
    r->vocab_size = head[1];
    r->sparse = head[2] != 0;
    r->background = (int32_t)head[3];
    long long n_row = head[4], n_exc = head[5];
    Py_ssize_t body = len - (Py_ssize_t)sizeof head;  /* two int32 arrays per count */
    if (body % 8 || n_row < 0 || n_row > body / 8 || n_exc != body / 8 - n_row)
        return bad_record("its counts do not match its size");
    if (r->vocab_size < 0 || r->vocab_size > 32LL * INT32_MAX)
        return bad_record("its vocabulary size is out of range");
    if (r->sparse != (dense == NULL)) return bad_record("a dense row comes beside the bytes");
    const int32_t *arrays = (const int32_t *)(p + sizeof head);
    if (r->sparse) {
        r->row = arrays;
        r->values = arrays + n_row;
        r->n_row = (Py_ssize_t)n_row;
    } else {
        if (n_row != 0) return bad_record("a dense row has no sparse words");
        r->row = words_of(dense, &r->n_row);
        r->values = NULL;
        if (r->row == NULL) return -1;
    }
    r->exc_tokens = arrays + 2 * n_row;
    r->exc_next = arrays + 2 * n_row + n_exc;
    r->n_exc = (Py_ssize_t)n_exc;
    return 0;
}

/* First index in the sorted `a[0:n]` holding `key`, or -1. */
static Py_ssize_t find(const int32_t *a, Py_ssize_t n, int32_t key) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) >> 1;
        if (a[mid] < key) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && a[lo] == key ? lo : -1;
}

/* Word `w` of a record's row. */
static int32_t row_word(const Record *r, Py_ssize_t w) {
    if (r->sparse) {
        Py_ssize_t i = find(r->row, r->n_row, (int32_t)w);
        return i < 0 ? r->background : r->values[i];
    }
    return w < r->n_row ? r->row[w] : 0;
}

/* The next state of `token` from a state's record: >= 0, -1 when the token is not allowed, -2
 * when it is allowed and its next state follows its byte length; -3 with an exception set. */
static long long record_step(PyObject *rec, long long token, int overflow) {
    Record r;
    if (record_of(rec, &r) < 0) return -3;
    if (overflow || token < 0 || token >= r.vocab_size) return -1;
    int32_t word = row_word(&r, (Py_ssize_t)(token >> 5));
    if (!(((uint32_t)word >> (token & 31)) & 1u)) return -1;
    Py_ssize_t i = find(r.exc_tokens, r.n_exc, (int32_t)token);
    return i >= 0 ? r.exc_next[i] : r.default_next;
}

/* A token id argument: its value, with *overflow set past the range of long long. */
static long long token_of(PyObject *arg, int *overflow) {
    return PyLong_AsLongLongAndOverflow(arg, overflow);
}

/* next_state(record, token_id) -> the next state, -1 when the token is not allowed, or -2 when
 * it is allowed and its next state follows its byte length. */
static PyObject *next_state(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "next_state(record, token_id)");
        return NULL;
    }
    int overflow = 0;
    long long token = token_of(args[1], &overflow);
    if (token == -1 && PyErr_Occurred()) return NULL;
    long long nxt = record_step(args[0], token, overflow);
    return nxt == -3 ? NULL : PyLong_FromLongLong(nxt);
}

/* Copy a dense row of `words` int32 words to `dst`; 0 on success. */
static int write_dense(int32_t *dst, Py_ssize_t words, const int32_t *src, Py_ssize_t n) {
    if (n != words) {
        PyErr_Format(PyExc_ValueError, "fill: the row has %zd words, the target %zd", n, words);
        return -1;
    }
    memcpy(dst, src, (size_t)words * 4);
    return 0;
}

/* Write a record's row into `words` int32 words at `dst`; 0 on success. */
static int write_record(int32_t *dst, Py_ssize_t words, PyObject *rec) {
    Record r;
    if (record_of(rec, &r) < 0) return -1;
    if (!r.sparse) return write_dense(dst, words, r.row, r.n_row);
    /* rows differ from all-zero or all-one: libc's memset, tuned per CPU, writes those (a
     * loop built for a baseline CPU measured slower than memcpy of the same size) */
    if (r.background == 0 || r.background == -1) memset(dst, r.background & 0xFF, (size_t)words * 4);
    else for (Py_ssize_t i = 0; i < words; i++) dst[i] = r.background;
    for (Py_ssize_t i = 0; i < r.n_row; i++)
        if (r.row[i] >= 0 && r.row[i] < words) dst[r.row[i]] = r.values[i];
    return 0;
}

/* Start loading a record's bytes (a fill of this state comes next). */
static void prefetch_record(PyObject *rec) {
    if (PyTuple_CheckExact(rec) && PyTuple_GET_SIZE(rec) == 2) rec = PyTuple_GET_ITEM(rec, 0);
    if (!PyBytes_CheckExact(rec)) return;
    const char *p = PyBytes_AS_STRING(rec);
    Py_ssize_t len = PyBytes_GET_SIZE(rec);
    for (Py_ssize_t off = 0; off < len && off < 256; off += 64) __builtin_prefetch(p + off);
}

/* An address argument, or NULL with an exception (a null address is refused). */
static int32_t *address_of(PyObject *arg) {
    int32_t *dst = (int32_t *)PyLong_AsVoidPtr(arg);
    if (dst == NULL && !PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "fill: a null address");
    return dst;
}

/* fill(address, words, record): write a state's row (see the record above) into `words` int32
 * words at `address`, which the caller keeps alive (a CPU tensor it holds). */
static PyObject *fill(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "fill(address, words, record)");
        return NULL;
    }
    int32_t *dst = address_of(args[0]);
    if (dst == NULL) return NULL;
    Py_ssize_t words = PyLong_AsSsize_t(args[1]);
    if (words == -1 && PyErr_Occurred()) return NULL;
    if (words < 0) {
        PyErr_SetString(PyExc_ValueError, "fill: a negative number of words");
        return NULL;
    }
    if (write_record(dst, words, args[2]) < 0) return NULL;
    Py_RETURN_NONE;
}

/* ---- Cursor: one sequence's position -------------------------------------------------------
 *
 * Cursor(fsm, records, make_record, length_next, fill_fallback, max_rollback)
 *   records        the FSM's list of state records (None where not made yet; it may grow)
 *   make_record    make_record(state) -> the state's record (computes a lazily built state)
 *   length_next    length_next(state, token) -> next state where a record says -2
 *   fill_fallback  fill_fallback(cursor, bitmask, index): fill_bitmask for a target not seen
 *                  before (it calls fill_at), and for targets not written by address
 * The history keeps the states and finished flags of the last max_rollback + 1 positions
 * (all of them when max_rollback is None), in [lo, hi) of two arrays.
 */
typedef struct {
    PyObject_HEAD
    PyObject *fsm, *records, *make_record, *length_next, *fill_fallback;
    PyObject *finished_row;                 /* bytes of int32 words: only EOS allowed */
    long long *eos;
    Py_ssize_t n_eos, words, max_rollback;  /* max_rollback -1: unlimited */
    int32_t start_state;
    int32_t *states;
    uint8_t *finished;
    Py_ssize_t lo, hi, cap;
    /* fill_bitmask's last target, written by address: the bitmask and row index it was given
     * (-1: no index), the bitmask's data pointer then, and the row's storage, kept so the
     * memory at the address stays allocated, with the bytes it must still hold */
    PyObject *target_bitmask, *target_storage;
    Py_ssize_t target_index;
    size_t target_data, target_needed;
    int32_t *target_address;
} Cursor;

static PyObject *str_data_ptr, *str_nbytes;

static int cursor_traverse(Cursor *c, visitproc visit, void *arg) {
    Py_VISIT(c->fsm); Py_VISIT(c->records); Py_VISIT(c->make_record); Py_VISIT(c->length_next);
    Py_VISIT(c->fill_fallback); Py_VISIT(c->finished_row); Py_VISIT(c->target_bitmask);
    Py_VISIT(c->target_storage);
    return 0;
}

static int cursor_clear(Cursor *c) {
    Py_CLEAR(c->fsm); Py_CLEAR(c->records); Py_CLEAR(c->make_record); Py_CLEAR(c->length_next);
    Py_CLEAR(c->fill_fallback); Py_CLEAR(c->finished_row); Py_CLEAR(c->target_bitmask);
    Py_CLEAR(c->target_storage);
    c->target_address = NULL;
    return 0;
}

static void cursor_dealloc(Cursor *c) {
    PyObject_GC_UnTrack(c);
    cursor_clear(c);
    PyMem_Free(c->eos);
    PyMem_Free(c->states);
    PyMem_Free(c->finished);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

/* 1 for a cursor whose __init__ succeeded, else 0 with a RuntimeError. */
static int ready(Cursor *c) {
    if (c->records != NULL) return 1;
    PyErr_SetString(PyExc_RuntimeError, "Cursor: not initialized");
    return 0;
}

/* A state number as the history stores it, or -1 with an exception. */
static int32_t state_of(long long value, const char *what) {
    if (value < 0 || value > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "Cursor: %s %lld is not a state number", what, value);
        return -1;
    }
    return (int32_t)value;
}

/* A max_rollback value: -1 for None, else >= 0 (a limit past PY_SSIZE_T_MAX is that: no history
 * gets longer); -2 with an exception. Errors as PyCursor's: TypeError for what operator.index
 * refuses, ValueError for any negative integer, however large. */
static Py_ssize_t rollback_limit(PyObject *value) {
    if (value == Py_None) return -1;
    PyObject *index = PyNumber_Index(value);
    if (index == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "max_rollback must be None or an integer, got %s",
                         Py_TYPE(value)->tp_name);
        }
        return -2;
    }
    int overflow = 0;
    long long limit = PyLong_AsLongLongAndOverflow(index, &overflow);
    Py_DECREF(index);
    if (limit == -1 && PyErr_Occurred()) return -2;
    if (overflow < 0 || (!overflow && limit < 0)) {
        PyErr_SetString(PyExc_ValueError, "max_rollback must be None or >= 0");
        return -2;
    }
    return overflow || limit > PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX : (Py_ssize_t)limit;
}

/* Drop the positions past max_rollback (written so that no sum can overflow). */
static void trim(Cursor *c) {
    if (c->max_rollback >= 0 && c->hi - c->lo - 1 > c->max_rollback) c->lo = c->hi - 1 - c->max_rollback;
}

/* Back to the start state, with no history. */
static void restart(Cursor *c) {
    c->lo = 0;
    c->hi = 1;
    c->states[0] = c->start_state;
    c->finished[0] = 0;
}

/* Everything is read and allocated first; the cursor changes only when all of it succeeded,
 * so a failed __init__ of a working cursor leaves it as it was. */
static int cursor_init(Cursor *c, PyObject *args, PyObject *kwargs) {
    PyObject *fsm, *records, *make_record, *length_next, *fill_fallback, *max_rollback;
    static char *names[] = {"fsm", "records", "make_record", "length_next", "fill_fallback",
                            "max_rollback", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!OOOO:Cursor", names, &fsm, &PyList_Type,
                                     &records, &make_record, &length_next, &fill_fallback,
                                     &max_rollback))
        return -1;
    Py_ssize_t limit = rollback_limit(max_rollback);
    if (limit == -2) return -1;
    int ok = 0;
    Py_ssize_t words = -1, n_eos = 0, n_row = 0;
    long long start = -1;
    long long *eos = NULL;
    int32_t *states = NULL;
    uint8_t *finished = NULL;
    PyObject *words_obj = NULL, *start_obj = NULL, *eos_obj = NULL, *eos_seq = NULL;
    PyObject *row = NULL, *row_view = NULL;
    if ((words_obj = PyObject_GetAttrString(fsm, "words")) == NULL) goto done;
    if ((words = PyLong_AsSsize_t(words_obj)) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "Cursor: fsm.words is negative");
        goto done;
    }
    if ((start_obj = PyObject_GetAttrString(fsm, "start_state")) == NULL) goto done;
    start = PyLong_AsLongLong(start_obj);
    if (start == -1 && PyErr_Occurred()) goto done;
    if (state_of(start, "start_state") < 0) goto done;
    if ((eos_obj = PyObject_GetAttrString(fsm, "eos_token_ids")) == NULL) goto done;
    if ((eos_seq = PySequence_Fast(eos_obj, "Cursor: eos_token_ids must be a sequence")) == NULL) goto done;
    n_eos = PySequence_Fast_GET_SIZE(eos_seq);
    if ((eos = PyMem_Malloc(sizeof(long long) * (n_eos ? n_eos : 1))) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_eos; i++) {
        eos[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(eos_seq, i));
        if (eos[i] == -1 && PyErr_Occurred()) goto done;
    }
    if ((row_view = PyObject_CallMethod(fsm, "finished_row_bytes", NULL)) == NULL) goto done;
    if (words_of(row_view, &n_row) == NULL) goto done;
    if (n_row != words) {
        PyErr_SetString(PyExc_ValueError, "Cursor: the finished row does not have fsm.words words");
        goto done;
    }
    states = PyMem_Malloc(sizeof(int32_t) * 64);
    finished = PyMem_Malloc(64);
    if (states == NULL || finished == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    ok = 1;
done:
    Py_XDECREF(words_obj); Py_XDECREF(start_obj); Py_XDECREF(eos_obj); Py_XDECREF(eos_seq);
    Py_XDECREF(row);
    if (!ok) {
        Py_XDECREF(row_view);
        PyMem_Free(eos); PyMem_Free(states); PyMem_Free(finished);
        return -1;
    }
    cursor_clear(c);
    PyMem_Free(c->eos); PyMem_Free(c->states); PyMem_Free(c->finished);
    Py_INCREF(fsm); c->fsm = fsm;
    Py_INCREF(records); c->records = records;
    Py_INCREF(make_record); c->make_record = make_record;
    Py_INCREF(length_next); c->length_next = length_next;
    Py_INCREF(fill_fallback); c->fill_fallback = fill_fallback;
    c->finished_row = row_view;
    c->words = words;
    c->eos = eos;
    c->n_eos = n_eos;
    c->start_state = (int32_t)start;
    c->max_rollback = limit;
    c->states = states;
    c->finished = finished;
    c->cap = 64;
    restart(c);
    return 0;
}

/* State `s`'s record, a new reference (made by make_record where the list has none). */
static PyObject *cursor_record(Cursor *c, int32_t s) {
    if (s < PyList_GET_SIZE(c->records)) {
        PyObject *rec = PyList_GET_ITEM(c->records, s);
        if (rec != Py_None) {
            Py_INCREF(rec);
            return rec;
        }
    }
    return PyObject_CallFunction(c->make_record, "i", (int)s);
}

/* Room for one more position: drop the trimmed ones, else grow. */
static int cursor_reserve(Cursor *c) {
    if (c->hi < c->cap) return 0;
    if (c->lo > 0) {
        memmove(c->states, c->states + c->lo, sizeof(int32_t) * (c->hi - c->lo));
        memmove(c->finished, c->finished + c->lo, c->hi - c->lo);
        c->hi -= c->lo;
        c->lo = 0;
        return 0;
    }
    Py_ssize_t cap = c->cap * 2;
    int32_t *states = PyMem_Realloc(c->states, sizeof(int32_t) * cap);
    if (states == NULL) { PyErr_NoMemory(); return -1; }
    c->states = states;
    uint8_t *finished = PyMem_Realloc(c->finished, cap);
    if (finished == NULL) { PyErr_NoMemory(); return -1; }
    c->finished = finished;
    c->cap = cap;
    return 0;
}

/* advance(token_id) -> bool: consume the token; False (and no change) where it is not allowed
 * or the sequence is finished. */
static PyObject *cursor_advance(Cursor *c, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
    PyObject *token_arg = nargs == 1 ? args[0] : NULL;
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) == 1 && nargs == 0
            && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "token_id") == 0)
        token_arg = args[0];
    else if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0)
        token_arg = NULL;
    if (token_arg == NULL) {
        PyErr_SetString(PyExc_TypeError, "advance(token_id)");
        return NULL;
    }
    if (!ready(c)) return NULL;
    if (c->finished[c->hi - 1]) Py_RETURN_FALSE;
    int overflow = 0;
    long long token = token_of(token_arg, &overflow);
    if (token == -1 && PyErr_Occurred()) return NULL;
    int32_t s = c->states[c->hi - 1];
    PyObject *rec = cursor_record(c, s);
    if (rec == NULL) return NULL;
    long long nxt = record_step(rec, token, overflow);
    Py_DECREF(rec);
    if (nxt == -3) return NULL;
    if (nxt == -2) {
        PyObject *got = PyObject_CallFunction(c->length_next, "iL", (int)s, token);
        if (got == NULL) return NULL;
        nxt = PyLong_AsLongLong(got);
        Py_DECREF(got);
        if (nxt == -1 && PyErr_Occurred()) return NULL;
        if (nxt < 0) {
            PyErr_Format(PyExc_ValueError, "Cursor: no next state for allowed token %lld", token);
            return NULL;
        }
    }
    if (nxt < 0) Py_RETURN_FALSE;
    if (state_of(nxt, "next state") < 0 || cursor_reserve(c) < 0) return NULL;
    uint8_t eos = 0;
    for (Py_ssize_t i = 0; !overflow && i < c->n_eos; i++) eos |= c->eos[i] == token;
    c->states[c->hi] = (int32_t)nxt;
    c->finished[c->hi] = eos;
    c->hi++;
    trim(c);
    if (!eos && nxt < PyList_GET_SIZE(c->records)) {
        PyObject *next_rec = PyList_GET_ITEM(c->records, nxt);
        if (next_rec != Py_None) prefetch_record(next_rec);
    }
    Py_RETURN_TRUE;
}

/* Write the current mask (only EOS once finished) at `dst`. */
static int cursor_write(Cursor *c, int32_t *dst) {
    if (c->finished[c->hi - 1]) {
        Py_ssize_t n;
        const int32_t *row = words_of(c->finished_row, &n);
        return row == NULL ? -1 : write_dense(dst, c->words, row, n);
    }
    PyObject *rec = cursor_record(c, c->states[c->hi - 1]);
    if (rec == NULL) return -1;
    int failed = write_record(dst, c->words, rec) < 0;
    Py_DECREF(rec);
    return failed ? -1 : 0;
}

/* Write the mask at the cached target; the storage is held through the write (make_record runs
 * Python, which may retarget this cursor). */
static PyObject *cursor_write_target(Cursor *c) {
    PyObject *storage = c->target_storage;
    Py_INCREF(storage);
    int failed = cursor_write(c, c->target_address) < 0;
    Py_DECREF(storage);
    if (failed) return NULL;
    Py_RETURN_NONE;
}

/* The unsigned number a no-argument method returns (data_ptr, nbytes); *failed set on error. */
static size_t call_unsigned(PyObject *obj, PyObject *name, int *failed) {
    PyObject *got = PyObject_CallMethodNoArgs(obj, name);
    if (got == NULL) { *failed = 1; return 0; }
    size_t value = PyLong_AsSize_t(got);
    Py_DECREF(got);
    *failed = value == (size_t)-1 && PyErr_Occurred();
    return value;
}

/* 1 when `index` (None or an int) is the cached target's row, 0 when not, -1 on error. */
static int same_index(Cursor *c, PyObject *index) {
    if (index == Py_None) return c->target_index == -1;
    Py_ssize_t i = PyLong_CheckExact(index) ? PyLong_AsSsize_t(index) : PyNumber_AsSsize_t(index, NULL);
    if (i == -1 && PyErr_Occurred()) {  /* not an index: the fallback reports it */
        PyErr_Clear();
        return 0;
    }
    return i >= 0 && i == c->target_index;
}

/* fill_bitmask(bitmask, index=None): the mask into `bitmask` (or its row `index`). The last
 * target is written by address when it is the same object and row, its data pointer has not
 * moved and its storage still holds the row; anything else goes through fill_fallback. */
static PyObject *cursor_fill_bitmask(Cursor *c, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames) {
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *bitmask = nargs > 0 ? args[0] : NULL, *index = nargs > 1 ? args[1] : Py_None;
    if (nargs > 2 || nargs + nkw > 2 || nargs + nkw < 1) {
        PyErr_SetString(PyExc_TypeError, "fill_bitmask(bitmask, index=None)");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(name, "index") == 0 && nargs < 2) index = args[nargs + i];
        else if (PyUnicode_CompareWithASCIIString(name, "bitmask") == 0 && nargs < 1) bitmask = args[nargs + i];
        else {
            PyErr_Format(PyExc_TypeError, "fill_bitmask() got an unexpected keyword argument %R", name);
            return NULL;
        }
    }
    if (bitmask == NULL) {
        PyErr_SetString(PyExc_TypeError, "fill_bitmask(bitmask, index=None): bitmask is missing");
        return NULL;
    }
    if (!ready(c)) return NULL;
    if (c->target_address != NULL && bitmask == c->target_bitmask) {
        int same = same_index(c, index), failed = 0;
        if (same < 0) return NULL;
        if (same && call_unsigned(bitmask, str_data_ptr, &failed) == c->target_data && !failed) {
            /* the storage could have been reallocated in place (untyped_storage().resize_)
             * and handed back at the same address, but smaller */
            size_t nbytes = call_unsigned(c->target_storage, str_nbytes, &failed);
            if (!failed && nbytes >= c->target_needed) return cursor_write_target(c);
        }
        if (failed) return NULL;
    }
    return PyObject_CallFunctionObjArgs(c->fill_fallback, (PyObject *)c, bitmask, index, NULL);
}

/* fill_at(bitmask, index, data_ptr, storage, address, needed): remember a target written by
 * address (index None or >= 0; `storage` holds the memory at `address` and must keep `needed`
 * bytes for it), then write the mask there. */
static PyObject *cursor_fill_at(Cursor *c, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "fill_at(bitmask, index, data_ptr, storage, address, needed)");
        return NULL;
    }
    if (!ready(c)) return NULL;
    Py_ssize_t index = args[1] == Py_None ? -1 : PyNumber_AsSsize_t(args[1], PyExc_IndexError);
    if (index == -1 && PyErr_Occurred()) return NULL;
    if (index < -1 || (index == -1 && args[1] != Py_None)) {
        PyErr_SetString(PyExc_ValueError, "fill_at: a row index must be None or >= 0");
        return NULL;
    }
    size_t data = PyLong_AsSize_t(args[2]);
    if (data == (size_t)-1 && PyErr_Occurred()) return NULL;
    int32_t *address = address_of(args[4]);
    if (address == NULL) return NULL;
    size_t needed = PyLong_AsSize_t(args[5]);
    if (needed == (size_t)-1 && PyErr_Occurred()) return NULL;
    if (needed < (size_t)c->words * 4) {
        PyErr_SetString(PyExc_ValueError, "fill_at: the storage must hold at least one row");
        return NULL;
    }
    Py_INCREF(args[0]); Py_INCREF(args[3]);
    Py_XSETREF(c->target_bitmask, args[0]);
    Py_XSETREF(c->target_storage, args[3]);
    c->target_index = index;
    c->target_needed = needed;
    c->target_data = data;
    c->target_address = address;
    return cursor_write_target(c);
}

/* Errors as PyCursor's: TypeError for what operator.index refuses (numpy integers are taken),
 * ValueError for any integer out of range, however large. */
static PyObject *cursor_rollback(Cursor *c, PyObject *arg) {
    PyObject *index = PyNumber_Index(arg);
    if (index == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "rollback(n): n must be an integer, got %s",
                         Py_TYPE(arg)->tp_name);
        }
        return NULL;
    }
    if (!ready(c)) {
        Py_DECREF(index);
        return NULL;
    }
    int overflow = 0;
    long long n = PyLong_AsLongLongAndOverflow(index, &overflow);
    if (n == -1 && PyErr_Occurred()) {
        Py_DECREF(index);
        return NULL;
    }
    Py_ssize_t undoable = c->hi - c->lo - 1;
    if (overflow || n < 0 || n > undoable) {
        PyErr_Format(PyExc_ValueError, "rollback(%S): only %zd tokens can be undone", index,
                     undoable);
        Py_DECREF(index);
        return NULL;
    }
    Py_DECREF(index);
    c->hi -= (Py_ssize_t)n;
    Py_RETURN_NONE;
}

static PyObject *cursor_reset(Cursor *c, PyObject *unused) {
    if (!ready(c)) return NULL;
    restart(c);
    Py_RETURN_NONE;
}

/* copy() -> a cursor at the same position, with the same history and limit (not the target). */
static PyObject *cursor_copy(Cursor *c, PyObject *unused) {
    if (!ready(c)) return NULL;
    PyObject *limit = c->max_rollback < 0 ? Py_NewRef(Py_None) : PyLong_FromSsize_t(c->max_rollback);
    if (limit == NULL) return NULL;
    Cursor *out = (Cursor *)PyObject_CallFunction((PyObject *)Py_TYPE(c), "OOOOOO", c->fsm,
                                                  c->records, c->make_record, c->length_next,
                                                  c->fill_fallback, limit);
    Py_DECREF(limit);
    if (out == NULL) return NULL;
    out->hi = 0;
    for (Py_ssize_t i = c->lo; i < c->hi; i++) {
        if (cursor_reserve(out) < 0) {
            Py_DECREF(out);
            return NULL;
        }
        out->states[out->hi] = c->states[i];
        out->finished[out->hi] = c->finished[i];
        out->hi++;
    }
    return (PyObject *)out;
}

static PyObject *cursor_get_state(Cursor *c, void *unused) {
    if (!ready(c)) return NULL;
    return PyLong_FromLong(c->states[c->hi - 1]);
}

static PyObject *cursor_get_finished(Cursor *c, void *unused) {
    if (!ready(c)) return NULL;
    return PyBool_FromLong(c->finished[c->hi - 1]);
}

static PyObject *cursor_get_max_rollback(Cursor *c, void *unused) {
    if (!ready(c)) return NULL;
    if (c->max_rollback < 0) Py_RETURN_NONE;
    return PyLong_FromSsize_t(c->max_rollback);
}

/* Lowering the limit drops the oldest positions at once. */
static int cursor_set_max_rollback(Cursor *c, PyObject *value, void *unused) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "max_rollback cannot be deleted");
        return -1;
    }
    if (!ready(c)) return -1;
    Py_ssize_t limit = rollback_limit(value);
    if (limit == -2) return -1;
    c->max_rollback = limit;
    trim(c);
    return 0;
}

static PyMethodDef cursor_methods[] = {
    {"advance", (PyCFunction)(void (*)(void))cursor_advance, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"fill_bitmask", (PyCFunction)(void (*)(void))cursor_fill_bitmask,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"fill_at", (PyCFunction)(void (*)(void))cursor_fill_at, METH_FASTCALL, NULL},
    {"rollback", (PyCFunction)cursor_rollback, METH_O, NULL},
    {"reset", (PyCFunction)cursor_reset, METH_NOARGS, NULL},
    {"copy", (PyCFunction)cursor_copy, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef cursor_getset[] = {
    {"state", (getter)cursor_get_state, NULL, NULL, NULL},
    {"finished", (getter)cursor_get_finished, NULL, NULL, NULL},
    {"max_rollback", (getter)cursor_get_max_rollback, (setter)cursor_set_max_rollback, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef cursor_members[] = {
    {"fsm", T_OBJECT, offsetof(Cursor, fsm), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject CursorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "matcher_step.Cursor",
    .tp_basicsize = sizeof(Cursor),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)cursor_init,
    .tp_dealloc = (destructor)cursor_dealloc,
    .tp_traverse = (traverseproc)cursor_traverse,
    .tp_clear = (inquiry)cursor_clear,
    .tp_methods = cursor_methods,
    .tp_getset = cursor_getset,
    .tp_members = cursor_members,
};

static PyMethodDef methods[] = {
    {"next_state", (PyCFunction)(void (*)(void))next_state, METH_FASTCALL, NULL},
    {"fill", (PyCFunction)(void (*)(void))fill, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "matcher_step", NULL, -1, methods};

PyMODINIT_FUNC PyInit_matcher_step(void) {
    str_data_ptr = PyUnicode_InternFromString("data_ptr");
    str_nbytes = PyUnicode_InternFromString("nbytes");
    if (str_data_ptr == NULL || str_nbytes == NULL) return NULL;
    if (PyType_Ready(&CursorType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&CursorType);
    if (PyModule_AddObject(m, "Cursor", (PyObject *)&CursorType) < 0) {
        Py_DECREF(&CursorType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
