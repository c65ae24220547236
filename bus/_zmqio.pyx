# cython: language_level=3
"""Direct libzmq calls for the bus's two hot loops: receiving whole multipart messages
(subscriber) and sending one three-frame message (publisher).

Why: through pyzmq each frame costs a Python-level ``recv``/``send`` call, and knowing
where a multipart message ends costs ``Socket.get(RCVMORE)``, which converts the option
to an enum every time (~0.6 µs per frame; ~2.4 µs per three-frame message of the ~5 µs a
subscriber spends per message). Here one call drains up to ``limit`` messages, checking
``zmq_msg_more`` in C.

pyzmq's own libzmq is used (the one already loaded in this process): the function
pointers are looked up with ``dlsym`` in the pyzmq extension module's library, so
nothing is linked at build time and the socket handles pyzmq hands out
(``Socket.underlying``) are valid here. If that lookup fails, ``AVAILABLE`` is False and
callers keep the plain pyzmq path. The GIL is held throughout (every call is
non-blocking), so no other thread can close a socket under us.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint64_t, uintptr_t

import errno

import zmq

cdef extern from "dlfcn.h" nogil:
    void *dlopen(const char *filename, int flag)
    void *dlsym(void *handle, const char *symbol)
    int RTLD_NOW


ctypedef struct zmq_msg_t:
    uint64_t _[8]  # zmq.h: 64 opaque bytes, pointer-aligned


ctypedef int (*f_msg_init)(zmq_msg_t *) nogil
ctypedef int (*f_msg_recv)(zmq_msg_t *, void *, int) nogil
ctypedef void *(*f_msg_data)(zmq_msg_t *) nogil
ctypedef size_t (*f_msg_size)(const zmq_msg_t *) nogil
ctypedef int (*f_msg_more)(const zmq_msg_t *) nogil
ctypedef int (*f_msg_close)(zmq_msg_t *) nogil
ctypedef int (*f_send)(void *, const void *, size_t, int) nogil
ctypedef int (*f_errno)() nogil

cdef f_msg_init _msg_init = NULL
cdef f_msg_recv _msg_recv = NULL
cdef f_msg_data _msg_data = NULL
cdef f_msg_size _msg_size = NULL
cdef f_msg_more _msg_more = NULL
cdef f_msg_close _msg_close = NULL
cdef f_send _send = NULL
cdef f_errno _errno = NULL

cdef int _DONTWAIT = zmq.DONTWAIT
cdef int _SNDMORE = zmq.SNDMORE
cdef int _EAGAIN = zmq.EAGAIN
cdef int _EINTR = errno.EINTR
cdef int _ENOTSOCK = zmq.ENOTSOCK


cdef bint _load():
    global _msg_init, _msg_recv, _msg_data, _msg_size, _msg_more, _msg_close, _send, _errno
    try:
        from zmq.backend.cython import _zmq
        path = _zmq.__file__.encode()
    except Exception:
        return False
    cdef void *h = dlopen(path, RTLD_NOW)  # already loaded: just a handle to it and its deps
    if h == NULL:
        return False
    _msg_init = <f_msg_init>dlsym(h, "zmq_msg_init")
    _msg_recv = <f_msg_recv>dlsym(h, "zmq_msg_recv")
    _msg_data = <f_msg_data>dlsym(h, "zmq_msg_data")
    _msg_size = <f_msg_size>dlsym(h, "zmq_msg_size")
    _msg_more = <f_msg_more>dlsym(h, "zmq_msg_more")
    _msg_close = <f_msg_close>dlsym(h, "zmq_msg_close")
    _send = <f_send>dlsym(h, "zmq_send")
    _errno = <f_errno>dlsym(h, "zmq_errno")
    return (_msg_init != NULL and _msg_recv != NULL and _msg_data != NULL and _msg_size != NULL
            and _msg_more != NULL and _msg_close != NULL and _send != NULL and _errno != NULL)


AVAILABLE = _load()


cdef inline void *_handle(sock) except NULL:
    if sock.closed:
        raise zmq.ZMQError(_ENOTSOCK)
    return <void *><uintptr_t>sock.underlying


def recv_messages(sock, Py_ssize_t limit):
    """Up to ``limit`` whole multipart messages already queued on ``sock``, never blocking.

    Returns a list of messages, each a list of ``bytes`` frames (as ``recv_multipart``
    gives); an empty list when nothing is queued. Raises ``zmq.ZMQError`` on a socket error.
    """
    cdef void *s = _handle(sock)
    cdef zmq_msg_t msg
    cdef list out = []
    cdef list frames
    cdef int rc, err
    cdef Py_ssize_t n = 0
    if _msg_init(&msg) != 0:
        raise zmq.ZMQError(_errno())
    try:
        while n < limit:
            rc = _msg_recv(&msg, s, _DONTWAIT)
            if rc < 0:
                err = _errno()
                if err == _EAGAIN or err == _EINTR:
                    break
                raise zmq.ZMQError(err)
            frames = [PyBytes_FromStringAndSize(<char *>_msg_data(&msg), _msg_size(&msg))]
            # The parts of a multipart message arrive together: once the first is here, the
            # rest are too (libzmq delivers messages atomically).
            while _msg_more(&msg):
                rc = _msg_recv(&msg, s, _DONTWAIT)
                if rc < 0:
                    raise zmq.ZMQError(_errno())
                frames.append(PyBytes_FromStringAndSize(<char *>_msg_data(&msg), _msg_size(&msg)))
            out.append(frames)
            n += 1
    finally:
        _msg_close(&msg)
    return out


def send3(sock, bytes topic, bytes header, bytes body):
    """Send ``[topic, header, body]`` without blocking (the publisher's hot path).

    Raises ``zmq.Again`` when the socket would block, ``zmq.ZMQError`` on other errors,
    exactly where ``send(..., SNDMORE | NOBLOCK)`` frame by frame would.
    """
    cdef void *s = _handle(sock)
    cdef int flags = _DONTWAIT | _SNDMORE
    if _send(s, PyBytes_AS_STRING(topic), PyBytes_GET_SIZE(topic), flags) < 0 \
            or _send(s, PyBytes_AS_STRING(header), PyBytes_GET_SIZE(header), flags) < 0 \
            or _send(s, PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body), _DONTWAIT) < 0:
        err = _errno()
        if err == _EAGAIN:
            raise zmq.Again(err)
        raise zmq.ZMQError(err)
