/* The decode-step hot path of a token FSM, as a CPython extension (built by kernels/native.py).
 *
 * A step in Python is a dozen attribute lookups and calls; here it is one call. The Python
 * versions (TokenFSM.step, RowStore.fill) give the same results and run where this cannot be
 * built; tests compare the two.
 *
 * A state's record is a tuple made once per state by TokenFSM._step_record:
 *   (row, exc_tokens, exc_next, default, vocab_size)
 *   row         the state's bitmask: a memoryview of int32 words (dense), or a tuple
 *               (background word, memoryview of sorted int32 word indices, memoryview of their
 *               int32 values) for a row that differs from all-zero or all-one in a few words
 *   exc_tokens  memoryview of the sorted int32 token ids whose next state is not the default
 *   exc_next    memoryview of their int32 next states
 *   default     next state of the other allowed tokens; -2: it follows the token's byte length
 *               (Python looks it up)
 *   vocab_size  tokens at or past it are never allowed
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* The int32 words of a memoryview, or NULL (with an exception) for anything else. */
static const int32_t *words_of(PyObject *view, Py_ssize_t *count) {
    if (!PyMemoryView_Check(view) || PyMemoryView_GET_BUFFER(view)->itemsize != 4
            || PyMemoryView_GET_BUFFER(view)->buf == NULL) {
        PyErr_SetString(PyExc_TypeError, "matcher_step: expected a memoryview of int32 words");
        return NULL;
    }
    Py_buffer *b = PyMemoryView_GET_BUFFER(view);
    *count = b->len / 4;
    return (const int32_t *)b->buf;
}

/* A sparse row's (background, word indices, values), checked; 0 on success. */
static int sparse_of(PyObject *row, int32_t *background, const int32_t **idx,
                     const int32_t **vals, Py_ssize_t *n) {
    Py_ssize_t n_idx, n_vals;
    if (PyTuple_GET_SIZE(row) != 3) {
        PyErr_SetString(PyExc_TypeError, "matcher_step: a sparse row is (background, words, values)");
        return -1;
    }
    long bg = PyLong_AsLong(PyTuple_GET_ITEM(row, 0));
    if (bg == -1 && PyErr_Occurred()) return -1;
    *background = (int32_t)bg;
    *idx = words_of(PyTuple_GET_ITEM(row, 1), &n_idx);
    if (*idx == NULL) return -1;
    *vals = words_of(PyTuple_GET_ITEM(row, 2), &n_vals);
    if (*vals == NULL) return -1;
    *n = n_idx < n_vals ? n_idx : n_vals;
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

/* Word `w` of a row (see the record above) into *word; 0 on success. */
static int row_word(PyObject *row, Py_ssize_t w, int32_t *word) {
    Py_ssize_t n;
    if (PyTuple_CheckExact(row)) {
        int32_t background;
        const int32_t *idx, *vals;
        if (sparse_of(row, &background, &idx, &vals, &n) < 0) return -1;
        Py_ssize_t i = find(idx, n, (int32_t)w);
        *word = i < 0 ? background : vals[i];
        return 0;
    }
    const int32_t *words = words_of(row, &n);
    if (words == NULL) return -1;
    *word = w < n ? words[w] : 0;
    return 0;
}

/* next_state(record, token_id) -> the next state, -1 when the token is not allowed, or -2 when
 * it is allowed and its next state follows its byte length. */
static PyObject *next_state(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyTuple_CheckExact(args[0]) || PyTuple_GET_SIZE(args[0]) != 5) {
        PyErr_SetString(PyExc_TypeError, "next_state(record, token_id)");
        return NULL;
    }
    PyObject *rec = args[0];
    int overflow = 0;
    long long token = PyLong_AsLongLongAndOverflow(args[1], &overflow);
    if (token == -1 && PyErr_Occurred()) return NULL;
    long long vocab_size = PyLong_AsLongLong(PyTuple_GET_ITEM(rec, 4));
    if (overflow || token < 0 || token >= vocab_size) return PyLong_FromLong(-1);
    if (vocab_size == -1 && PyErr_Occurred()) return NULL;
    int32_t word;
    if (row_word(PyTuple_GET_ITEM(rec, 0), (Py_ssize_t)(token >> 5), &word) < 0) return NULL;
    if (!(((uint32_t)word >> (token & 31)) & 1u)) return PyLong_FromLong(-1);
    Py_ssize_t n, n_next;
    const int32_t *tokens = words_of(PyTuple_GET_ITEM(rec, 1), &n);
    const int32_t *next = tokens ? words_of(PyTuple_GET_ITEM(rec, 2), &n_next) : NULL;
    if (next == NULL) return NULL;
    Py_ssize_t i = find(tokens, n < n_next ? n : n_next, (int32_t)token);
    if (i >= 0) return PyLong_FromLong(next[i]);
    PyObject *fallback = PyTuple_GET_ITEM(rec, 3);
    Py_INCREF(fallback);
    return fallback;
}

/* fill(address, words, row): write a row (see the record above) into `words` int32 words at
 * `address`, which the caller keeps alive (a CPU tensor it holds). */
static PyObject *fill(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "fill(address, words, row)");
        return NULL;
    }
    int32_t *dst = (int32_t *)PyLong_AsVoidPtr(args[0]);
    if (dst == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "fill: a null address");
        return NULL;
    }
    Py_ssize_t words = PyLong_AsSsize_t(args[1]);
    if (words == -1 && PyErr_Occurred()) return NULL;
    if (words < 0) {
        PyErr_SetString(PyExc_ValueError, "fill: a negative number of words");
        return NULL;
    }
    PyObject *row = args[2];
    Py_ssize_t n;
    if (PyTuple_CheckExact(row)) {
        int32_t background;
        const int32_t *idx, *vals;
        if (sparse_of(row, &background, &idx, &vals, &n) < 0) return NULL;
        for (Py_ssize_t i = 0; i < words; i++) dst[i] = background;  /* vectorized by -O3 */
        for (Py_ssize_t i = 0; i < n; i++)
            if (idx[i] >= 0 && idx[i] < words) dst[idx[i]] = vals[i];
        Py_RETURN_NONE;
    }
    const int32_t *src = words_of(row, &n);
    if (src == NULL) return NULL;
    if (n != words) {
        PyErr_Format(PyExc_ValueError, "fill: the row has %zd words, the target %zd", n, words);
        return NULL;
    }
    memcpy(dst, src, (size_t)words * 4);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"next_state", (PyCFunction)(void (*)(void))next_state, METH_FASTCALL, NULL},
    {"fill", (PyCFunction)(void (*)(void))fill, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "matcher_step", NULL, -1, methods};

PyMODINIT_FUNC PyInit_matcher_step(void) { return PyModule_Create(&module); }
