/* The four Vulkan calls of one recorded dispatch, made from C.
 *
 * Through the cffi binding these calls cost about 2 microseconds per dispatch (argument
 * conversion on every call); from C they cost a tenth of that. record.py hands this module the
 * loader's function pointers once, then passes handles as integers. Optional: where no C
 * compiler built it, record.py makes the same calls through cffi. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef void (*BindPipelineFn)(void *, int32_t, void *);
typedef void (*BindSetsFn)(void *, int32_t, void *, uint32_t, uint32_t, void *const *, uint32_t, const uint32_t *);
typedef void (*PushFn)(void *, void *, uint32_t, uint32_t, uint32_t, const void *);
typedef void (*DispatchFn)(void *, uint32_t, uint32_t, uint32_t);

static BindPipelineFn bind_pipeline_fn;
static BindSetsFn bind_sets_fn;
static PushFn push_fn;
static DispatchFn dispatch_fn;

#define BIND_POINT_COMPUTE 1 /* VK_PIPELINE_BIND_POINT_COMPUTE */
#define STAGE_COMPUTE 0x20   /* VK_SHADER_STAGE_COMPUTE_BIT */

static int as_pointer(PyObject *o, void **out) {
    *out = PyLong_AsVoidPtr(o);
    return !(*out == NULL && PyErr_Occurred());
}

/* init(bind_pipeline, bind_descriptor_sets, push_constants, dispatch): function addresses. */
static PyObject *init(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    void *p[4];
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "init takes four function addresses");
        return NULL;
    }
    for (int i = 0; i < 4; i++) {
        if (!as_pointer(args[i], &p[i])) return NULL;
        if (p[i] == NULL) {
            PyErr_SetString(PyExc_ValueError, "a null function address");
            return NULL;
        }
    }
    bind_pipeline_fn = (BindPipelineFn)p[0];
    bind_sets_fn = (BindSetsFn)p[1];
    push_fn = (PushFn)p[2];
    dispatch_fn = (DispatchFn)p[3];
    Py_RETURN_NONE;
}

/* dispatch(cmd, pipeline, layout, descriptor_set, push: bytes | None, gx, gy, gz, bind_pipeline) */
static PyObject *dispatch(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    void *cmd, *pipeline, *layout, *set;
    unsigned long g[3];
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "dispatch takes nine arguments");
        return NULL;
    }
    if (dispatch_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "init was not called");
        return NULL;
    }
    if (!as_pointer(args[0], &cmd) || !as_pointer(args[1], &pipeline) || !as_pointer(args[2], &layout) ||
        !as_pointer(args[3], &set))
        return NULL;
    PyObject *push = args[4];
    if (push != Py_None && !PyBytes_Check(push)) {
        PyErr_SetString(PyExc_TypeError, "push constants must be bytes or None");
        return NULL;
    }
    for (int i = 0; i < 3; i++) {
        g[i] = PyLong_AsUnsignedLong(args[5 + i]);
        if (PyErr_Occurred()) return NULL;
        if (g[i] > UINT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "a workgroup count does not fit 32 bits");
            return NULL;
        }
    }
    int bind = PyObject_IsTrue(args[8]);
    if (bind < 0) return NULL;
    if (bind) bind_pipeline_fn(cmd, BIND_POINT_COMPUTE, pipeline);
    bind_sets_fn(cmd, BIND_POINT_COMPUTE, layout, 0, 1, &set, 0, NULL);
    if (push != Py_None && PyBytes_GET_SIZE(push) > 0)
        push_fn(cmd, layout, STAGE_COMPUTE, 0, (uint32_t)PyBytes_GET_SIZE(push), PyBytes_AS_STRING(push));
    dispatch_fn(cmd, (uint32_t)g[0], (uint32_t)g[1], (uint32_t)g[2]);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"init", (PyCFunction)(void (*)(void))init, METH_FASTCALL, "Set the Vulkan function addresses."},
    {"dispatch", (PyCFunction)(void (*)(void))dispatch, METH_FASTCALL, "Bind, push and dispatch."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_record", NULL, -1, methods};

PyMODINIT_FUNC PyInit__record(void) { return PyModule_Create(&module); }
