/* The four Vulkan calls of one recorded dispatch, made from C, and the stream's hazard barrier.
 *
 * Through the cffi binding these calls cost about 2 microseconds per dispatch (argument
 * conversion on every call); from C they cost a tenth of that. record.py hands this module the
 * loader's function pointers once, then passes handles as integers. Optional: where no C
 * compiler built it, record.py makes the same calls through cffi (record.dispatch_tracked's
 * Python twin keeps the same rules). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef void (*BindPipelineFn)(void *, int32_t, void *);
typedef void (*BindSetsFn)(void *, int32_t, void *, uint32_t, uint32_t, void *const *, uint32_t, const uint32_t *);
typedef void (*PushFn)(void *, void *, uint32_t, uint32_t, uint32_t, const void *);
typedef void (*DispatchFn)(void *, uint32_t, uint32_t, uint32_t);
typedef void (*BarrierFn)(void *, uint32_t, uint32_t, uint32_t, uint32_t, const void *, uint32_t, const void *,
                          uint32_t, const void *);

/* VkMemoryBarrier's layout (the C recorder is built without the Vulkan headers). */
typedef struct {
    int32_t sType;
    const void *pNext;
    uint32_t srcAccessMask;
    uint32_t dstAccessMask;
} MemoryBarrier;

static BindPipelineFn bind_pipeline_fn;
static BindSetsFn bind_sets_fn;
static PushFn push_fn;
static DispatchFn dispatch_fn;
static BarrierFn barrier_fn;
static MemoryBarrier hazard = {46 /* VK_STRUCTURE_TYPE_MEMORY_BARRIER */, NULL, 0, 0};
static uint32_t hazard_stages;
static PyObject *busy_name;

#define BIND_POINT_COMPUTE 1 /* VK_PIPELINE_BIND_POINT_COMPUTE */
#define STAGE_COMPUTE 0x20   /* VK_SHADER_STAGE_COMPUTE_BIT */

static int as_pointer(PyObject *o, void **out) {
    *out = PyLong_AsVoidPtr(o);
    return !(*out == NULL && PyErr_Occurred());
}

/* init(bind_pipeline, bind_descriptor_sets, push_constants, dispatch[, pipeline_barrier, stages,
 * src_access, dst_access]): function addresses, and the hazard barrier's stage and access masks. */
static PyObject *init(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    void *p[5] = {NULL, NULL, NULL, NULL, NULL};
    unsigned long masks[3] = {0, 0, 0};
    if (nargs != 4 && nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "init takes four function addresses (or five and three masks)");
        return NULL;
    }
    for (int i = 0; i < (nargs == 8 ? 5 : 4); i++) {
        if (!as_pointer(args[i], &p[i])) return NULL;
        if (p[i] == NULL) {
            PyErr_SetString(PyExc_ValueError, "a null function address");
            return NULL;
        }
    }
    for (int i = 0; nargs == 8 && i < 3; i++) {
        masks[i] = PyLong_AsUnsignedLong(args[5 + i]);
        if (PyErr_Occurred()) return NULL;
    }
    bind_pipeline_fn = (BindPipelineFn)p[0];
    bind_sets_fn = (BindSetsFn)p[1];
    push_fn = (PushFn)p[2];
    dispatch_fn = (DispatchFn)p[3];
    barrier_fn = (BarrierFn)p[4];
    hazard_stages = (uint32_t)masks[0];
    hazard.srcAccessMask = (uint32_t)masks[1];
    hazard.dstAccessMask = (uint32_t)masks[2];
    Py_RETURN_NONE;
}

/* The arguments every dispatch takes: (cmd, pipeline, layout, descriptor_set, push: bytes | None,
 * gx, gy, gz, bind_pipeline) at args[0..8]; checked before any Vulkan call. */
typedef struct {
    void *cmd, *pipeline, *layout, *set;
    PyObject *push;
    uint32_t g[3];
    int bind;
} DispatchArgs;

static int parse_dispatch(PyObject *const *args, DispatchArgs *d) {
    if (dispatch_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "init was not called");
        return 0;
    }
    if (!as_pointer(args[0], &d->cmd) || !as_pointer(args[1], &d->pipeline) || !as_pointer(args[2], &d->layout) ||
        !as_pointer(args[3], &d->set))
        return 0;
    d->push = args[4];
    if (d->push != Py_None && !PyBytes_Check(d->push)) {
        PyErr_SetString(PyExc_TypeError, "push constants must be bytes or None");
        return 0;
    }
    for (int i = 0; i < 3; i++) {
        unsigned long g = PyLong_AsUnsignedLong(args[5 + i]);
        if (PyErr_Occurred()) return 0;
        if (g > UINT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "a workgroup count does not fit 32 bits");
            return 0;
        }
        d->g[i] = (uint32_t)g;
    }
    d->bind = PyObject_IsTrue(args[8]);
    return d->bind >= 0;
}

static void record_dispatch(const DispatchArgs *d) {
    if (d->bind) bind_pipeline_fn(d->cmd, BIND_POINT_COMPUTE, d->pipeline);
    bind_sets_fn(d->cmd, BIND_POINT_COMPUTE, d->layout, 0, 1, &d->set, 0, NULL);
    if (d->push != Py_None && PyBytes_GET_SIZE(d->push) > 0)
        push_fn(d->cmd, d->layout, STAGE_COMPUTE, 0, (uint32_t)PyBytes_GET_SIZE(d->push), PyBytes_AS_STRING(d->push));
    dispatch_fn(d->cmd, d->g[0], d->g[1], d->g[2]);
}

/* dispatch(cmd, pipeline, layout, descriptor_set, push: bytes | None, gx, gy, gz, bind_pipeline) */
static PyObject *dispatch(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    DispatchArgs d;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "dispatch takes nine arguments");
        return NULL;
    }
    if (!parse_dispatch(args, &d)) return NULL;
    record_dispatch(&d);
    Py_RETURN_NONE;
}

/* barrier(cmd): the hazard barrier (compute and transfer writes before compute and transfer use). */
static PyObject *barrier(PyObject *self, PyObject *arg) {
    void *cmd;
    if (barrier_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "init was not given the barrier");
        return NULL;
    }
    if (!as_pointer(arg, &cmd)) return NULL;
    barrier_fn(cmd, hazard_stages, hazard_stages, 0, 1, &hazard, 0, NULL, 0, NULL);
    Py_RETURN_NONE;
}

/* keys[idx[i]] (a borrowed reference), or NULL with IndexError when idx[i] is out of range. */
static PyObject *key_at(PyObject *keys, PyObject *idx, Py_ssize_t i) {
    Py_ssize_t k = PyLong_AsSsize_t(PyTuple_GET_ITEM(idx, i));
    if (k < 0 || k >= PyTuple_GET_SIZE(keys)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_IndexError, "a binding index out of range");
        return NULL;
    }
    return PyTuple_GET_ITEM(keys, k);
}

/* Whether every position in ``idx`` (a tuple of ints) indexes ``keys``; sets IndexError if not. */
static int check_indices(PyObject *keys, PyObject *idx) {
    Py_ssize_t n = PyTuple_GET_SIZE(idx);
    for (Py_ssize_t i = 0; i < n; i++)
        if (key_at(keys, idx, i) == NULL) return 0;
    return 1;
}

/* Whether any key at the positions ``idx`` (a tuple of ints) is in one of the sets; -1 on error. */
static int any_in(PyObject *keys, PyObject *idx, PyObject *a, PyObject *b) {
    Py_ssize_t n = PyTuple_GET_SIZE(idx);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = key_at(keys, idx, i);
        if (key == NULL) return -1;
        int found = PySet_Contains(a, key);
        if (found == 0 && b != NULL) found = PySet_Contains(b, key);
        if (found != 0) return found;
    }
    return 0;
}

static int add_all(PyObject *set, PyObject *keys, PyObject *idx) {
    Py_ssize_t n = PyTuple_GET_SIZE(idx);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = key_at(keys, idx, i);
        if (key == NULL || PySet_Add(set, key) < 0) return -1;
    }
    return 0;
}

/* dispatch_tracked(cmd, pipeline, layout, descriptor_set, push, gx, gy, gz, bind_pipeline, keys, reads, writes,
 *                  written, read, allocations, serial) -> 1 if a hazard barrier was recorded first, else 0.
 *
 * The stream's hazard rule (record.py's cffi twin is the reference): a barrier when a read range
 * (``keys[i]`` for i in ``reads``) was written since the last barrier, or a written range was read or
 * written; a barrier empties ``written`` and ``read``. Then the dispatch; the ranges join the sets and
 * every allocation's ``busy`` becomes ``serial``. */
static PyObject *dispatch_tracked(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    DispatchArgs d;
    if (nargs != 16) {
        PyErr_SetString(PyExc_TypeError, "dispatch_tracked takes sixteen arguments");
        return NULL;
    }
    PyObject *keys = args[9], *reads = args[10], *writes = args[11], *written = args[12], *read = args[13];
    PyObject *allocations = args[14], *serial = args[15];
    if (!PyTuple_Check(keys) || !PyTuple_Check(reads) || !PyTuple_Check(writes) || !PySet_Check(written) ||
        !PySet_Check(read) || !PyList_Check(allocations)) {
        PyErr_SetString(PyExc_TypeError, "keys, reads and writes are tuples, written and read sets, allocations a list");
        return NULL;
    }
    if (barrier_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "init was not given the barrier");
        return NULL;
    }
    if (!parse_dispatch(args, &d) || !check_indices(keys, reads) || !check_indices(keys, writes)) return NULL;
    int hazard_found = any_in(keys, reads, written, NULL);
    if (hazard_found == 0) hazard_found = any_in(keys, writes, written, read);
    if (hazard_found < 0) return NULL;
    if (hazard_found) {
        barrier_fn(d.cmd, hazard_stages, hazard_stages, 0, 1, &hazard, 0, NULL, 0, NULL);
        if (PySet_Clear(written) < 0 || PySet_Clear(read) < 0) return NULL;
    }
    record_dispatch(&d);
    if (add_all(read, keys, reads) < 0 || add_all(written, keys, writes) < 0) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(allocations);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyObject_SetAttr(PyList_GET_ITEM(allocations, i), busy_name, serial) < 0) return NULL;
    }
    return PyLong_FromLong(hazard_found);
}

static PyMethodDef methods[] = {
    {"init", (PyCFunction)(void (*)(void))init, METH_FASTCALL, "Set the Vulkan function addresses."},
    {"dispatch", (PyCFunction)(void (*)(void))dispatch, METH_FASTCALL, "Bind, push and dispatch."},
    {"dispatch_tracked", (PyCFunction)(void (*)(void))dispatch_tracked, METH_FASTCALL,
     "The hazard barrier where the ranges need it, then bind, push and dispatch."},
    {"barrier", (PyCFunction)barrier, METH_O, "The hazard barrier."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_record", NULL, -1, methods};

PyMODINIT_FUNC PyInit__record(void) {
    busy_name = PyUnicode_InternFromString("busy");
    if (busy_name == NULL) return NULL;
    return PyModule_Create(&module);
}
