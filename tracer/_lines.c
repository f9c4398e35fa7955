/*
 * Where the lines of a trace that are not syscall lines start, in one pass over a chunk.
 *
 * tracer/traceformat.py decodes each run of syscall lines with one msgspec call, and needs the
 * other lines' offsets and each run's line count (to check that every line held one object).
 * A regular expression and bytes.count took 35 of the 160 ms that reading threadbench's 30 MB
 * trace took, both stepping byte by byte; here memchr finds each newline and memcmp tests the
 * prefix of the line after it (measured in docs/performance.md).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static int append(PyObject *list, Py_ssize_t value) {
    PyObject *number = PyLong_FromSsize_t(value);
    if (!number)
        return -1;
    int r = PyList_Append(list, number);
    Py_DECREF(number);
    return r;
}

static PyObject *scan(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer chunk, prefix;
    Py_ssize_t start, stop;
    if (!PyArg_ParseTuple(args, "y*nny*", &chunk, &start, &stop, &prefix))
        return NULL;
    PyObject *offsets = PyList_New(0), *numbers = PyList_New(0), *out = NULL;
    if (!offsets || !numbers)
        goto done;
    if (start < 0)
        start = 0;
    if (stop > chunk.len)
        stop = chunk.len;
    const char *buf = chunk.buf;
    Py_ssize_t line = 0, at = start;
    while (at < stop) {
        if (stop - at < prefix.len || memcmp(buf + at, prefix.buf, (size_t)prefix.len) != 0) {
            if (append(offsets, at) < 0 || append(numbers, line) < 0)
                goto done;
        }
        const char *newline = memchr(buf + at, '\n', (size_t)(stop - at));
        if (!newline)
            break; /* a last line without its newline: not counted */
        at = newline - buf + 1;
        line++;
    }
    out = Py_BuildValue("(OOn)", offsets, numbers, line);
done:
    Py_XDECREF(offsets);
    Py_XDECREF(numbers);
    PyBuffer_Release(&chunk);
    PyBuffer_Release(&prefix);
    return out;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(chunk, start, stop, prefix) -> (offsets, numbers, lines)\n\n"
     "Of the lines of chunk[start:stop]: where each line that does not begin with prefix\n"
     "starts, its number (0 for the first line), and how many lines end with a newline."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "tracer._lines",
    .m_doc = "The line scan of the trace reader (tracer/traceformat.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__lines(void) { return PyModule_Create(&module); }
