/*
 * AddressSpace (analyzers/addrspace.py) in C: a process's regions sorted by start, replayed
 * call by call.
 *
 * The classifier and summarize replay every mapping call of a trace into it. In Python, add,
 * remove and find were a quarter of the classifier's time, nearly all of it the interpreter's
 * work around each bisect. Here an entry keeps its start, end and made_ns as machine words beside
 * its Region, and a lookup is a binary search over an array. On threadbench's trace (160,000
 * calls) the classifier went from 0.21 to 0.15 s, 500M fewer instructions (measured; see
 * docs/performance.md). tests/test_addrspace.py checks it against a page-by-page model.
 *
 * Addresses are kept as unsigned 64-bit keys: a value outside [0, 2**64), which only a corrupt
 * trace holds, is clamped to that range. The Regions themselves are untouched: a region cut in
 * two takes its new bounds from the Python ints it was given (msgspec.structs.replace).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    unsigned long long start, end;
    long long made; /* Region.made_ns */
    PyObject *region;
} Entry;

typedef struct {
    PyObject_HEAD
    Entry *items;
    Py_ssize_t len, cap;
} Space;

static PyObject *s_start, *s_end, *s_made_ns, *s_prot, *replace_fn;

/* An address as a key, clamped to [0, 2**64). -1 with an exception when it is not an int. */
static int to_key(PyObject *value, unsigned long long *out) {
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "an address must be an int, not %.80s",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long small = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow < 0 || (overflow == 0 && small < 0)) {
        *out = 0;
    } else if (overflow == 0) {
        *out = (unsigned long long)small;
    } else {
        *out = PyLong_AsUnsignedLongLong(value);
        if (*out == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            *out = ~0ULL;
        }
    }
    return 0;
}

/* A time as a signed 64-bit number, saturated. */
static int to_time(PyObject *value, long long *out) {
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "a time must be an int, not %.80s", Py_TYPE(value)->tp_name);
        return -1;
    }
    int overflow = 0;
    *out = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow)
        *out = overflow > 0 ? LLONG_MAX : LLONG_MIN;
    return 0;
}

/* start, end and made_ns of a Region. */
static int entry_of(PyObject *region, Entry *e) {
    PyObject *v;
    int bad;
    if (!(v = PyObject_GetAttr(region, s_start)))
        return -1;
    bad = to_key(v, &e->start);
    Py_DECREF(v);
    if (bad || !(v = PyObject_GetAttr(region, s_end)))
        return -1;
    bad = to_key(v, &e->end);
    Py_DECREF(v);
    if (bad || !(v = PyObject_GetAttr(region, s_made_ns)))
        return -1;
    bad = to_time(v, &e->made);
    Py_DECREF(v);
    e->region = region;
    return bad;
}

/* The first index whose start is > key (bisect_right) or >= key (bisect_left). */
static Py_ssize_t upper(const Space *s, unsigned long long key) {
    Py_ssize_t lo = 0, hi = s->len;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (s->items[mid].start > key)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static Py_ssize_t lower(const Space *s, unsigned long long key) {
    Py_ssize_t lo = 0, hi = s->len;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (s->items[mid].start >= key)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* Room for len entries. */
static int reserve(Space *s, Py_ssize_t len) {
    if (len <= s->cap)
        return 0;
    Py_ssize_t cap = len < 16 ? 16 : len * 2;
    Entry *items = PyMem_Realloc(s->items, (size_t)cap * sizeof(Entry));
    if (!items) {
        PyErr_NoMemory();
        return -1;
    }
    s->items = items;
    s->cap = cap;
    return 0;
}

/* n entries in place of the `gone` at i (the caller releases their regions); reserve() first. */
static void splice(Space *s, Py_ssize_t i, Py_ssize_t gone, const Entry *put, Py_ssize_t n) {
    Py_ssize_t len = s->len - gone + n;
    memmove(s->items + i + n, s->items + i + gone, (size_t)(s->len - i - gone) * sizeof(Entry));
    if (n)
        memcpy(s->items + i, put, (size_t)n * sizeof(Entry));
    s->len = len;
}

/* replace(region, **kwargs) as a new entry, which owns the new region. */
static int cut(PyObject *region, PyObject *kwargs, Entry *out) {
    PyObject *args = PyTuple_Pack(1, region);
    if (!args)
        return -1;
    PyObject *made = PyObject_Call(replace_fn, args, kwargs);
    Py_DECREF(args);
    if (!made)
        return -1;
    if (entry_of(made, out) < 0) {
        Py_DECREF(made);
        return -1;
    }
    return 0;
}

/* cut() of one field. */
static int cut_at(PyObject *region, PyObject *field, PyObject *value, Entry *out) {
    PyObject *kwargs = PyDict_New();
    if (!kwargs || PyDict_SetItem(kwargs, field, value) < 0) {
        Py_XDECREF(kwargs);
        return -1;
    }
    int r = cut(region, kwargs, out);
    Py_DECREF(kwargs);
    return r;
}

static int do_remove(Space *s, PyObject *start_obj, PyObject *end_obj, unsigned long long start,
                     unsigned long long end, int timed, long long entered) {
    if (end <= start)
        return 0;
    Py_ssize_t i = upper(s, start) - 1;
    if (i >= 0 && s->items[i].start == start && s->items[i].end == end &&
        (!timed || s->items[i].made <= entered)) {
        /* The whole of one region (munmap undoing its mmap): nothing else to cut. */
        PyObject *region = s->items[i].region;
        splice(s, i, 1, NULL, 0);
        Py_DECREF(region); /* last: its deallocation cannot see the space half changed */
        return 0;
    }
    if (i < 0)
        i = 0;
    Py_ssize_t j = i;
    while (j < s->len && s->items[j].start < end)
        j++;
    /* Each region in [i, j) leaves at most two pieces. */
    Entry *keep = PyMem_Malloc((size_t)(2 * (j - i) + 1) * sizeof(Entry));
    if (!keep) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t n = 0;
    for (Py_ssize_t k = i; k < j; k++) {
        Entry *e = &s->items[k], piece;
        if ((timed && e->made > entered) || e->end <= start) {
            keep[n++] = *e; /* made after the munmap entered, or before the range */
            Py_INCREF(e->region);
            continue;
        }
        if (e->start < start) {
            if (cut_at(e->region, s_end, start_obj, &piece) < 0)
                goto fail;
            keep[n++] = piece;
        }
        if (e->end > end) {
            if (cut_at(e->region, s_start, end_obj, &piece) < 0)
                goto fail;
            keep[n++] = piece;
        }
    }
    /* The regions replaced, released once the space is whole again (as in the short path). */
    PyObject **gone = PyMem_Malloc((size_t)(j - i + 1) * sizeof(PyObject *));
    if (!gone || reserve(s, s->len - (j - i) + n) < 0) {
        PyMem_Free(gone);
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t k = i; k < j; k++)
        gone[k - i] = s->items[k].region;
    splice(s, i, j - i, keep, n);
    PyMem_Free(keep);
    for (Py_ssize_t k = 0; k < j - i; k++)
        Py_DECREF(gone[k]);
    PyMem_Free(gone);
    return 0;
fail:
    for (Py_ssize_t k = 0; k < n; k++)
        Py_DECREF(keep[k].region);
    PyMem_Free(keep);
    return -1;
}

static int do_add(Space *s, PyObject *region) {
    Entry e;
    if (entry_of(region, &e) < 0)
        return -1;
    if (e.end <= e.start)
        return 0;
    Py_ssize_t i = lower(s, e.start);
    if (!((i == s->len || s->items[i].start >= e.end) && (i == 0 || s->items[i - 1].end <= e.start))) {
        PyObject *start_obj = PyObject_GetAttr(region, s_start);
        PyObject *end_obj = start_obj ? PyObject_GetAttr(region, s_end) : NULL;
        int r = end_obj ? do_remove(s, start_obj, end_obj, e.start, e.end, 0, 0) : -1;
        Py_XDECREF(start_obj);
        Py_XDECREF(end_obj);
        if (r < 0)
            return -1;
        i = lower(s, e.start);
    }
    if (reserve(s, s->len + 1) < 0)
        return -1;
    Py_INCREF(region);
    splice(s, i, 0, &e, 1);
    return 0;
}

/* The [start, end) a method's first two arguments give, after checking that it has lo to hi
 * arguments: -1 with an exception when not. */
static int range_args(const char *name, PyObject *const *args, Py_ssize_t nargs, int lo, int hi,
                      unsigned long long *start, unsigned long long *end) {
    if (nargs < lo || nargs > hi) {
        if (lo == hi)
            PyErr_Format(PyExc_TypeError, "%s() takes %d arguments (%zd given)", name, lo, nargs);
        else
            PyErr_Format(PyExc_TypeError, "%s() takes %d to %d arguments (%zd given)", name, lo,
                         hi, nargs);
        return -1;
    }
    return to_key(args[0], start) < 0 || to_key(args[1], end) < 0 ? -1 : 0;
}

/* -- the Python type ------------------------------------------------------------------------ */

static void space_dealloc(Space *s) {
    for (Py_ssize_t k = 0; k < s->len; k++)
        Py_DECREF(s->items[k].region);
    PyMem_Free(s->items);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyObject *space_find(Space *s, PyObject *addr_obj) {
    unsigned long long addr;
    if (to_key(addr_obj, &addr) < 0)
        return NULL;
    Py_ssize_t i = upper(s, addr) - 1;
    if (i >= 0 && s->items[i].end > addr)
        return Py_NewRef(s->items[i].region);
    Py_RETURN_NONE;
}

static PyObject *overlapping(Space *s, unsigned long long start, unsigned long long end) {
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
    Py_ssize_t i = upper(s, start) - 1;
    for (i = i < 0 ? 0 : i; i < s->len && s->items[i].start < end; i++) {
        if (s->items[i].end > start && PyList_Append(out, s->items[i].region) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static PyObject *space_overlapping(Space *s, PyObject *const *args, Py_ssize_t nargs) {
    unsigned long long start, end;
    if (range_args("overlapping", args, nargs, 2, 2, &start, &end) < 0)
        return NULL;
    return overlapping(s, start, end);
}

static PyObject *space_remove(Space *s, PyObject *const *args, Py_ssize_t nargs) {
    unsigned long long start, end;
    long long entered = 0;
    int timed = 0;
    if (range_args("remove", args, nargs, 2, 3, &start, &end) < 0)
        return NULL;
    if (nargs == 3 && args[2] != Py_None) {
        if (to_time(args[2], &entered) < 0)
            return NULL;
        timed = 1;
    }
    if (do_remove(s, args[0], args[1], start, end, timed, entered) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *space_add(Space *s, PyObject *region) {
    if (do_add(s, region) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *space_reprotect(Space *s, PyObject *const *args, Py_ssize_t nargs) {
    unsigned long long start, end;
    if (range_args("reprotect", args, nargs, 3, 3, &start, &end) < 0)
        return NULL;
    PyObject *parts = overlapping(s, start, end);
    if (!parts)
        return NULL;
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(parts); k++) {
        PyObject *region = PyList_GET_ITEM(parts, k);
        Entry e;
        if (entry_of(region, &e) < 0)
            goto fail;
        PyObject *kwargs = PyDict_New();
        if (!kwargs)
            goto fail;
        int bad = PyDict_SetItem(kwargs, s_prot, args[2]) < 0 ||
                  (e.start < start && PyDict_SetItem(kwargs, s_start, args[0]) < 0) ||
                  (e.end > end && PyDict_SetItem(kwargs, s_end, args[1]) < 0);
        Entry piece;
        if (bad || cut(region, kwargs, &piece) < 0) {
            Py_DECREF(kwargs);
            goto fail;
        }
        Py_DECREF(kwargs);
        bad = do_add(s, piece.region);
        Py_DECREF(piece.region);
        if (bad < 0)
            goto fail;
    }
    Py_DECREF(parts);
    Py_RETURN_NONE;
fail:
    Py_DECREF(parts);
    return NULL;
}

static PyObject *space_copy(Space *s, PyObject *Py_UNUSED(ignored)) {
    Space *other = (Space *)Py_TYPE(s)->tp_alloc(Py_TYPE(s), 0);
    if (!other)
        return NULL;
    if (s->len) {
        other->items = PyMem_Malloc((size_t)s->len * sizeof(Entry));
        if (!other->items) {
            Py_DECREF(other);
            return PyErr_NoMemory();
        }
        memcpy(other->items, s->items, (size_t)s->len * sizeof(Entry));
        for (Py_ssize_t k = 0; k < s->len; k++)
            Py_INCREF(other->items[k].region);
        other->len = other->cap = s->len;
    }
    return (PyObject *)other;
}

static PyMethodDef space_methods[] = {
    {"find", (PyCFunction)space_find, METH_O, "The region containing ``addr``."},
    {"overlapping", (PyCFunction)(void (*)(void))space_overlapping, METH_FASTCALL,
     "Regions that intersect [start, end)."},
    {"remove", (PyCFunction)(void (*)(void))space_remove, METH_FASTCALL,
     "Forget [start, end): regions that straddle the edges are cut.\n\n"
     "``entered_ns``: when the munmap was seen entering. A region whose call was seen\n"
     "returning after that is kept: the program cannot have named an address before its mmap\n"
     "returned, so that munmap ran first and freed the range the mmap then got. The tracer\n"
     "reports the stops of threads stopped at once in its waitpid order, not the kernel's,\n"
     "so such a munmap can be recorded after the mmap."},
    {"add", (PyCFunction)space_add, METH_O,
     "Map ``region``, replacing whatever it covers (as mmap with MAP_FIXED does)."},
    {"reprotect", (PyCFunction)(void (*)(void))space_reprotect, METH_FASTCALL,
     "mprotect: the covered parts keep their owner and take the new protection."},
    {"copy", (PyCFunction)space_copy, METH_NOARGS, "A fork's child starts with the same regions."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SpaceType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "analyzers._addrspace.AddressSpace",
    .tp_basicsize = sizeof(Space),
    .tp_dealloc = (destructor)space_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Non-overlapping regions kept sorted by start; new mappings replace what they cover.",
    .tp_methods = space_methods,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "analyzers._addrspace",
    .m_doc = "The address-space replay's data structure (analyzers/addrspace.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__addrspace(void) {
    if (!(s_start = PyUnicode_InternFromString("start")) ||
        !(s_end = PyUnicode_InternFromString("end")) ||
        !(s_made_ns = PyUnicode_InternFromString("made_ns")) ||
        !(s_prot = PyUnicode_InternFromString("prot")))
        return NULL;
    PyObject *structs = PyImport_ImportModule("msgspec.structs");
    if (!structs)
        return NULL;
    replace_fn = PyObject_GetAttrString(structs, "replace");
    Py_DECREF(structs);
    if (!replace_fn || PyType_Ready(&SpaceType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddObjectRef(m, "AddressSpace", (PyObject *)&SpaceType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
