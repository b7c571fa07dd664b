/*
 * _lstm_edge_push: the push of a Stream on the native backend, as one C call from Python.
 *
 * Through ctypes, a push of one frame spends more time in Python (lock, chunk check, buffer lookups, the ctypes
 * call, the output record) than the C model spends on the frame. This module does the same work in C for the
 * common chunk (an exact numpy float32 array, C-contiguous, native byte order, the model's frame shape, at least
 * one frame) and hands every other chunk to the Python push it is given, which validates it and raises the
 * project's errors. Results, state and refusals are those of the Python push: the C model does the work either
 * way, and it refuses NaN/inf itself (the status is turned into the project's exception by `error`).
 *
 * Built on first use like the C library (lstm_edge.runtime.native_build); when Python's headers are missing the
 * backend keeps its ctypes push. Needs no numpy headers: arrays are read and written through the buffer protocol,
 * and output arrays come ready-made from Python (`make_outputs(frames)`: a list of fresh [frames, out] arrays).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

typedef int (*lem_push_fn)(void *stream, const float *x, size_t n_frames, float *y);

#define MAX_FRAME_DIMS 4
#define MAX_LAYOUTS 8 /* chunk lengths an output list is kept for (then all are dropped at once) */

typedef struct {
    PyObject_HEAD
    lem_push_fn push;
    void *stream;
    PyObject *owner;        /* keeps the C stream alive as long as this pusher */
    PyObject *ndarray;      /* numpy.ndarray: only exact arrays take the C path */
    PyObject *fallback;     /* push(x) in Python, for every other chunk */
    PyObject *make_outputs; /* make_outputs(frames) -> list of fresh float32 arrays [frames, out] */
    PyObject *error;        /* error(status, x) -> the exception to raise */
    PyObject *busy_error;   /* busy_error() -> the exception for a push while one is running */
    PyObject *layouts;      /* dict: frames -> list of output arrays not handed out yet */
    Py_ssize_t frame_dims;
    Py_ssize_t frame_shape[MAX_FRAME_DIMS];
    Py_ssize_t out_items;   /* floats per output frame */
    long long frames;       /* output frames (or pushes, when counts_frames is 0) since the last reset */
    int counts_frames;
    int busy;
} Pusher;

static void raise_made(PyObject *made) {
    /* `made` is an exception instance from a Python factory (or NULL with an error already set) */
    if (made == NULL)
        return;
    if (PyExceptionInstance_Check(made))
        PyErr_SetObject((PyObject *)Py_TYPE(made), made);
    else
        PyErr_Format(PyExc_TypeError, "expected an exception instance from the error factory, got %R", made);
    Py_DECREF(made);
}

/* The next output array for `frames` (a new reference), or NULL with an error set. */
static PyObject *take_output(Pusher *self, Py_ssize_t frames) {
    PyObject *key = PyLong_FromSsize_t(frames);
    if (key == NULL)
        return NULL;
    PyObject *ready = PyDict_GetItemWithError(self->layouts, key); /* borrowed */
    if (ready == NULL && PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    if (ready == NULL || PyList_GET_SIZE(ready) == 0) {
        if (ready == NULL && PyDict_GET_SIZE(self->layouts) >= MAX_LAYOUTS)
            PyDict_Clear(self->layouts);
        ready = PyObject_CallFunction(self->make_outputs, "n", frames);
        if (ready == NULL || !PyList_Check(ready) || PyList_GET_SIZE(ready) == 0) {
            if (ready != NULL)
                PyErr_Format(PyExc_TypeError, "make_outputs(%zd): expected a non-empty list, got %R", frames, ready);
            Py_XDECREF(ready);
            Py_DECREF(key);
            return NULL;
        }
        int stored = PyDict_SetItem(self->layouts, key, ready);
        Py_DECREF(ready); /* the dict holds it */
        if (stored != 0) {
            Py_DECREF(key);
            return NULL;
        }
    }
    Py_DECREF(key);
    Py_ssize_t last = PyList_GET_SIZE(ready) - 1;
    PyObject *out = PyList_GET_ITEM(ready, last);
    Py_INCREF(out);
    if (PyList_SetSlice(ready, last, last + 1, NULL) != 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* 1 when `view` is the chunk the C path takes: float32, native order, the frame shape, >= 1 frame. */
static int is_fast_chunk(const Pusher *self, const Py_buffer *view) {
    if (view->itemsize != 4 || view->format == NULL || view->ndim != self->frame_dims + 1 || view->shape[0] < 1)
        return 0;
    const char *format = view->format;
    if (format[0] == '=' || format[0] == '@' || (format[0] == '<' && PY_LITTLE_ENDIAN))
        format++;
    if (format[0] != 'f' || format[1] != '\0')
        return 0;
    for (Py_ssize_t axis = 0; axis < self->frame_dims; axis++)
        if (view->shape[axis + 1] != self->frame_shape[axis])
            return 0;
    return 1;
}

static void count(Pusher *self, Py_ssize_t frames) { self->frames += self->counts_frames ? frames : 1; }

/* The slow path: the Python push validates (and maybe converts) the chunk and runs it. */
static PyObject *push_in_python(Pusher *self, PyObject *x) {
    PyObject *y = PyObject_CallOneArg(self->fallback, x);
    if (y == NULL)
        return NULL;
    Py_ssize_t frames = PyObject_Length(y);
    if (frames < 0) {
        Py_DECREF(y);
        return NULL;
    }
    count(self, frames);
    return y;
}

static PyObject *push_in_c(Pusher *self, PyObject *x, Py_buffer *in) {
    Py_ssize_t frames = in->shape[0];
    PyObject *y = take_output(self, frames);
    if (y == NULL)
        return NULL;
    Py_buffer out;
    if (PyObject_GetBuffer(y, &out, PyBUF_WRITABLE | PyBUF_ND) != 0) {
        Py_DECREF(y);
        return NULL;
    }
    if (out.len != (Py_ssize_t)(frames * self->out_items * sizeof(float))) {
        PyBuffer_Release(&out);
        PyErr_Format(PyExc_ValueError, "output array of %zd bytes for %zd frames of %zd floats", out.len, frames,
                     self->out_items);
        Py_DECREF(y);
        return NULL;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = self->push(self->stream, (const float *)in->buf, (size_t)frames, (float *)out.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    if (status != 0) {
        Py_DECREF(y);
        raise_made(PyObject_CallFunction(self->error, "iO", status, x));
        return NULL;
    }
    count(self, frames);
    return y;
}

static PyObject *Pusher_push(Pusher *self, PyObject *x) {
    if (self->busy) {
        raise_made(PyObject_CallNoArgs(self->busy_error));
        return NULL;
    }
    self->busy = 1;
    PyObject *y;
    Py_buffer in;
    if ((PyObject *)Py_TYPE(x) != self->ndarray) {
        y = push_in_python(self, x);
    } else if (PyObject_GetBuffer(x, &in, PyBUF_ND | PyBUF_FORMAT) != 0) {
        PyErr_Clear(); /* not C-contiguous: the Python push copies it */
        y = push_in_python(self, x);
    } else {
        int fast = is_fast_chunk(self, &in);
        y = fast ? push_in_c(self, x, &in) : NULL;
        PyBuffer_Release(&in);
        if (!fast)
            y = push_in_python(self, x);
    }
    self->busy = 0;
    return y;
}

static int Pusher_init(Pusher *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"push_address", "stream_address", "frame_shape", "out_items", "counts_frames", "owner",
                            "ndarray", "fallback", "make_outputs", "error", "busy_error", NULL};
    unsigned long long push_address, stream_address;
    PyObject *shape;
    Py_ssize_t out_items;
    int counts_frames;
    PyObject *owner, *ndarray, *fallback, *make_outputs, *error, *busy_error;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "KKOnpOOOOOO", names, &push_address, &stream_address, &shape,
                                     &out_items, &counts_frames, &owner, &ndarray, &fallback, &make_outputs, &error,
                                     &busy_error))
        return -1;
    if (push_address == 0 || stream_address == 0) {
        PyErr_SetString(PyExc_ValueError, "push_address and stream_address: expected non-null addresses");
        return -1;
    }
    if (!PyTuple_Check(shape) || PyTuple_GET_SIZE(shape) > MAX_FRAME_DIMS) {
        PyErr_Format(PyExc_ValueError, "frame_shape: expected a tuple of at most %d ints, got %R", MAX_FRAME_DIMS,
                     shape);
        return -1;
    }
    self->frame_dims = PyTuple_GET_SIZE(shape);
    for (Py_ssize_t axis = 0; axis < self->frame_dims; axis++) {
        self->frame_shape[axis] = PyLong_AsSsize_t(PyTuple_GET_ITEM(shape, axis));
        if (self->frame_shape[axis] < 0) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "frame_shape: expected sizes >= 0, got %R", shape);
            return -1;
        }
    }
    PyObject *layouts = PyDict_New();
    if (layouts == NULL)
        return -1;
    self->push = (lem_push_fn)(uintptr_t)push_address;
    self->stream = (void *)(uintptr_t)stream_address;
    self->out_items = out_items;
    self->counts_frames = counts_frames;
    self->frames = 0;
    self->busy = 0;
    Py_XSETREF(self->layouts, layouts);
    Py_XSETREF(self->owner, Py_NewRef(owner));
    Py_XSETREF(self->ndarray, Py_NewRef(ndarray));
    Py_XSETREF(self->fallback, Py_NewRef(fallback));
    Py_XSETREF(self->make_outputs, Py_NewRef(make_outputs));
    Py_XSETREF(self->error, Py_NewRef(error));
    Py_XSETREF(self->busy_error, Py_NewRef(busy_error));
    return 0;
}

static int Pusher_traverse(Pusher *self, visitproc visit, void *arg) {
    Py_VISIT(self->owner);
    Py_VISIT(self->ndarray);
    Py_VISIT(self->fallback);
    Py_VISIT(self->make_outputs);
    Py_VISIT(self->error);
    Py_VISIT(self->busy_error);
    Py_VISIT(self->layouts);
    return 0;
}

static int Pusher_clear(Pusher *self) {
    Py_CLEAR(self->owner);
    Py_CLEAR(self->ndarray);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->make_outputs);
    Py_CLEAR(self->error);
    Py_CLEAR(self->busy_error);
    Py_CLEAR(self->layouts);
    return 0;
}

static void Pusher_dealloc(Pusher *self) {
    PyObject_GC_UnTrack(self);
    Pusher_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Pusher_methods[] = {
    {"push", (PyCFunction)Pusher_push, METH_O,
     "push(x) -> y: run a chunk on the C stream (the C path for an exact float32 array of the frame shape, the "
     "Python push for anything else)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Pusher_members[] = {
    {"frames", T_LONGLONG, offsetof(Pusher, frames), 0,
     "output frames (or pushes) since the last reset; the owner sets it to 0 on reset"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject PusherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_lstm_edge_push.Pusher",
    .tp_basicsize = sizeof(Pusher),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One C stream's push from Python (see the module docstring).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Pusher_init,
    .tp_dealloc = (destructor)Pusher_dealloc,
    .tp_traverse = (traverseproc)Pusher_traverse,
    .tp_clear = (inquiry)Pusher_clear,
    .tp_methods = Pusher_methods,
    .tp_members = Pusher_members,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_lstm_edge_push",
    .m_doc = "A Stream's push on the native backend as one C call (see native_push.c).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__lstm_edge_push(void) {
    if (PyType_Ready(&PusherType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&PusherType);
    if (PyModule_AddObject(m, "Pusher", (PyObject *)&PusherType) < 0) {
        Py_DECREF(&PusherType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
