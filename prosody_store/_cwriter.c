/* The writer of prosody_store in C: an optional accelerator.
 *
 * Over the package's value model (see serialization.py):
 *
 *   dumps, dump_dat, dump_item: Lua source exactly as the pure-Python
 *       serialization.dumps/dump_dat/dump_item write it (Prosody 0.11+'s
 *       util.serialization layout);
 *   export_json, export_json_pull: the typed JSON of export.py's to_json +
 *       its json encoder (compact, ensure_ascii=False), as UTF-8 bytes;
 *   import_value: export.decode_value of typed JSON as json parsed it.
 *
 * Every function either returns exactly what the pure-Python code returns
 * or declines by returning None, and the caller then runs the pure code,
 * which gives the value or raises its own error.  So this file never raises
 * for bad values: anything it does not know for sure (subclasses, an error
 * of any kind, keys that would collide in Lua, integers beyond 64 bits,
 * lone surrogates, tables nested deeper than the pure code allows) makes it
 * decline.  Only running out of memory raises (MemoryError).
 *
 * Recursion is bounded by the pure code's own depth limit (127 tables,
 * Prosody's), which also stops cycles.  No Python code runs while a value
 * is written (only exact built-in types are looked at), so the containers
 * cannot change under the writer.
 *
 * Written by hand because no library writes Prosody's format; the stdlib's
 * C json encoder cannot write the typed JSON without a Python conversion
 * of every value first, which is what this replaces.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#define WRITE_MAX_DEPTH 127 /* serialization.WRITE_MAX_DEPTH */

/* Internal results: OK, DECLINE (no exception set), FAIL (exception set). */
#define OK 0
#define DECLINE (-1)
#define FAIL (-2)

/* The boolean-key markers of prosody_store._lua_table (strong references). */
static PyObject *TRUE_KEY = NULL;
static PyObject *FALSE_KEY = NULL;

/* ------------------------------------------------------------------------ */
/* An output buffer: on the stack while small, then a bytes object, which
   becomes the result without a copy.                                       */

#define STACK_BUF 8192

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    PyObject *bytes; /* NULL while the data is in `small` */
    char small[STACK_BUF];
} Buf;

static void buf_init(Buf *b) {
    b->data = b->small;
    b->len = 0;
    b->cap = STACK_BUF;
    b->bytes = NULL;
}

static void buf_free(Buf *b) {
    Py_CLEAR(b->bytes);
    b->data = b->small;
}

static int buf_grow(Buf *b, Py_ssize_t need) {
    Py_ssize_t want;
    if (need > PY_SSIZE_T_MAX / 4 - b->len) {
        PyErr_NoMemory();
        return FAIL;
    }
    want = b->cap;
    while (want - b->len < need)
        want *= 2;
    if (b->bytes == NULL) {
        b->bytes = PyBytes_FromStringAndSize(NULL, want);
        if (b->bytes == NULL)
            return FAIL;
        memcpy(PyBytes_AS_STRING(b->bytes), b->small, (size_t)b->len);
    } else if (_PyBytes_Resize(&b->bytes, want) < 0) {
        return FAIL; /* b->bytes is NULL now */
    }
    b->data = PyBytes_AS_STRING(b->bytes);
    b->cap = want;
    return OK;
}

/* Room for n more bytes. */
static inline int buf_reserve(Buf *b, Py_ssize_t n) {
    if (b->cap - b->len >= n)
        return OK;
    return buf_grow(b, n);
}

static inline int buf_put(Buf *b, const char *s, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0)
        return FAIL;
    memcpy(b->data + b->len, s, (size_t)n);
    b->len += n;
    return OK;
}

#define PUT_LIT(b, lit) buf_put((b), (lit), (Py_ssize_t)(sizeof(lit) - 1))

static inline int buf_byte(Buf *b, char c) {
    if (buf_reserve(b, 1) < 0)
        return FAIL;
    b->data[b->len++] = c;
    return OK;
}

/* A newline and `tabs` tabs. */
static int buf_indent(Buf *b, int tabs) {
    if (buf_reserve(b, (Py_ssize_t)tabs + 1) < 0)
        return FAIL;
    b->data[b->len++] = '\n';
    memset(b->data + b->len, '\t', (size_t)tabs);
    b->len += tabs;
    return OK;
}

/* Decimal digits of a 64-bit integer ("%d"). */
static int buf_int(Buf *b, long long value) {
    char tmp[24];
    char *end = tmp + sizeof(tmp);
    char *p = end;
    unsigned long long u = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
    do {
        *--p = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    if (value < 0)
        *--p = '-';
    return buf_put(b, p, (Py_ssize_t)(end - p));
}

/* The text PyOS_double_to_string gives (what Python's "%"-formatting and
   float.__repr__ use), copied in. */
static int buf_double(Buf *b, double x, char format, int precision, int flags) {
    int rc;
    char *text = PyOS_double_to_string(x, format, precision, flags, NULL);
    if (text == NULL)
        return FAIL;
    rc = buf_put(b, text, (Py_ssize_t)strlen(text));
    PyMem_Free(text);
    return rc;
}

/* An exact int as a C long long; DECLINE beyond 64 bits. */
static int exact_long(PyObject *v, long long *out) {
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow)
        return DECLINE;
    if (value == -1 && PyErr_Occurred())
        return FAIL;
    *out = value;
    return OK;
}

/* ------------------------------------------------------------------------ */
/* Lua strings: Prosody escapes every byte but printable ASCII; named       */
/* escapes where Lua has them, else three decimal digits.                   */

static char LUA_ESC[256][5];     /* the escape of each byte, NUL-terminated */
static unsigned char LUA_ESC_LEN[256]; /* 0: written as it is */

static void init_lua_escapes(void) {
    int i;
    for (i = 0; i < 256; i++) {
        if (i < 32 || i >= 127) {
            PyOS_snprintf(LUA_ESC[i], 5, "\\%03d", i);
            LUA_ESC_LEN[i] = 4;
        } else {
            LUA_ESC_LEN[i] = 0;
        }
    }
#define NAMED(c, s) do { strcpy(LUA_ESC[c], s); LUA_ESC_LEN[c] = 2; } while (0)
    NAMED(7, "\\a");
    NAMED(8, "\\b");
    NAMED(12, "\\f");
    NAMED(10, "\\n");
    NAMED(13, "\\r");
    NAMED(9, "\\t");
    NAMED(11, "\\v");
    NAMED(92, "\\\\");
    NAMED(34, "\\\"");
    NAMED(39, "\\'");
#undef NAMED
}

/* Bytes of a Lua string body, escaped (room must be made by the caller:
   4 per byte at most). */
static inline void lua_escape_bytes(Buf *b, const unsigned char *p, Py_ssize_t n) {
    char *out = b->data + b->len;
    Py_ssize_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = p[i];
        unsigned char len = LUA_ESC_LEN[c];
        if (len == 0) {
            *out++ = (char)c;
        } else {
            memcpy(out, LUA_ESC[c], 4);
            out += len;
        }
    }
    b->len = out - b->data;
}

#define CHUNK 4096 /* characters escaped per reservation */

static int lua_bytes(Buf *b, const unsigned char *p, Py_ssize_t n) {
    Py_ssize_t done = 0;
    if (buf_byte(b, '"') < 0)
        return FAIL;
    while (done < n) {
        Py_ssize_t step = n - done < CHUNK ? n - done : CHUNK;
        /* memcpy of 4 bytes per escape: one spare byte at the end */
        if (buf_reserve(b, step * 4 + 1) < 0)
            return FAIL;
        lua_escape_bytes(b, p + done, step);
        done += step;
    }
    return buf_byte(b, '"');
}

/* One code point's UTF-8 bytes (c >= 0x80), each escaped: 16 bytes at most. */
static inline char *lua_escape_utf8(char *out, Py_UCS4 c) {
    if (c < 0x800) {
        memcpy(out, LUA_ESC[0xC0 | (c >> 6)], 4);
        memcpy(out + 4, LUA_ESC[0x80 | (c & 0x3F)], 4);
        return out + 8;
    }
    if (c < 0x10000) {
        memcpy(out, LUA_ESC[0xE0 | (c >> 12)], 4);
        memcpy(out + 4, LUA_ESC[0x80 | ((c >> 6) & 0x3F)], 4);
        memcpy(out + 8, LUA_ESC[0x80 | (c & 0x3F)], 4);
        return out + 12;
    }
    memcpy(out, LUA_ESC[0xF0 | (c >> 18)], 4);
    memcpy(out + 4, LUA_ESC[0x80 | ((c >> 12) & 0x3F)], 4);
    memcpy(out + 8, LUA_ESC[0x80 | ((c >> 6) & 0x3F)], 4);
    memcpy(out + 12, LUA_ESC[0x80 | (c & 0x3F)], 4);
    return out + 16;
}

/* The characters of a str (of one storage kind) as a Lua string body, a
   chunk at a time; DECLINE at a lone surrogate (not UTF-8: the pure code
   raises). */
#define LUA_UCS_BODY(TYPE)                                                    \
    {                                                                         \
        const TYPE *p = (const TYPE *)data;                                   \
        while (done < n) {                                                    \
            Py_ssize_t end = n - done < CHUNK ? n : done + CHUNK;             \
            char *out;                                                        \
            if (buf_reserve(b, (end - done) * 16) < 0)                        \
                return FAIL;                                                  \
            out = b->data + b->len;                                           \
            for (; done < end; done++) {                                      \
                Py_UCS4 c = p[done];                                          \
                if (c < 0x80) {                                               \
                    unsigned char len = LUA_ESC_LEN[c];                       \
                    if (len == 0) {                                           \
                        *out++ = (char)c;                                     \
                    } else {                                                  \
                        memcpy(out, LUA_ESC[c], 4);                           \
                        out += len;                                           \
                    }                                                         \
                } else if (c >= 0xD800 && c <= 0xDFFF) {                      \
                    return DECLINE;                                           \
                } else {                                                      \
                    out = lua_escape_utf8(out, c);                            \
                }                                                             \
            }                                                                 \
            b->len = out - b->data;                                           \
        }                                                                     \
    }

/* An exact str as a quoted Lua string of its UTF-8 bytes. */
static int lua_str(Buf *b, PyObject *s) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(s), done = 0;
    const void *data = PyUnicode_DATA(s);
    if (PyUnicode_IS_ASCII(s))
        return lua_bytes(b, (const unsigned char *)data, n);
    if (buf_byte(b, '"') < 0)
        return FAIL;
    switch (PyUnicode_KIND(s)) {
    case PyUnicode_1BYTE_KIND:
        LUA_UCS_BODY(Py_UCS1)
        break;
    case PyUnicode_2BYTE_KIND:
        LUA_UCS_BODY(Py_UCS2)
        break;
    default:
        LUA_UCS_BODY(Py_UCS4)
    }
    return buf_byte(b, '"');
}

/* ------------------------------------------------------------------------ */
/* Lua values                                                               */

static int lua_number(Buf *b, PyObject *v) {
    if (Py_TYPE(v) == &PyLong_Type) {
        long long value;
        int rc = exact_long(v, &value);
        return rc < 0 ? rc : buf_int(b, value);
    } else {
        double x = PyFloat_AS_DOUBLE(v);
        if (isnan(x))
            return PUT_LIT(b, "(0/0)");
        if (isinf(x))
            return x > 0 ? PUT_LIT(b, "(1/0)") : PUT_LIT(b, "(-1/0)");
        return buf_double(b, x, 'g', 18, 0); /* "%.18g" % x */
    }
}

/* Any value but a table (None, bool, int, float, str, bytes, bytearray). */
static int lua_scalar(Buf *b, PyObject *v) {
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyUnicode_Type)
        return lua_str(b, v);
    if (t == &PyLong_Type || t == &PyFloat_Type)
        return lua_number(b, v);
    if (v == Py_True)
        return PUT_LIT(b, "true");
    if (v == Py_False)
        return PUT_LIT(b, "false");
    if (v == Py_None)
        return PUT_LIT(b, "nil");
    if (t == &PyBytes_Type)
        return lua_bytes(b, (const unsigned char *)PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
    if (t == &PyByteArray_Type)
        return lua_bytes(b, (const unsigned char *)PyByteArray_AS_STRING(v),
                         PyByteArray_GET_SIZE(v));
    return DECLINE; /* another type, or a subclass: the pure code decides */
}

static inline int is_table(PyObject *v) {
    PyTypeObject *t = Py_TYPE(v);
    return t == &PyDict_Type || t == &PyList_Type || t == &PyTuple_Type;
}

/* Which keys of one dict may collide once written as Lua. */
typedef struct {
    int true_bool, true_key, false_bool, false_key;
} KeyKinds;

/* A bytes key equal, once written, to a str key of the same dict
   (serialization._check_duplicate_keys compares str keys by their
   "surrogatepass" UTF-8).  The keys are compared one by one, only the exact
   str ones: a dict lookup could run the __eq__ of a key of another type. */
static int bytes_key_collides(PyObject *d, PyObject *k) {
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    int rc = OK;
    PyObject *text = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k),
                                          "surrogatepass");
    if (text == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            return FAIL;
        PyErr_Clear(); /* not UTF-8 even with surrogates: no str key writes these bytes */
        return OK;
    }
    while (PyDict_Next(d, &pos, &key, &value)) {
        if (Py_TYPE(key) == &PyUnicode_Type && PyUnicode_Compare(key, text) == 0) {
            rc = DECLINE;
            break;
        }
    }
    Py_DECREF(text);
    return rc;
}

/* DECLINE if key `k` of dict `d` is, once written, the same Lua key as
   another of its keys (the pure code raises).  Every key counts, those
   whose value is None (no entry) too. */
static int check_key(PyObject *d, PyObject *k, KeyKinds *kinds) {
    if (k == TRUE_KEY || k == Py_True) {
        if (k == TRUE_KEY)
            kinds->true_key = 1;
        else
            kinds->true_bool = 1;
        return kinds->true_key && kinds->true_bool ? DECLINE : OK;
    }
    if (k == FALSE_KEY || k == Py_False) {
        if (k == FALSE_KEY)
            kinds->false_key = 1;
        else
            kinds->false_bool = 1;
        return kinds->false_key && kinds->false_bool ? DECLINE : OK;
    }
    if (Py_TYPE(k) == &PyBytes_Type)
        return bytes_key_collides(d, k);
    return OK;
}

/* "[key] = " for an explicit key (not the next positional index). */
static int lua_key(Buf *b, PyObject *k) {
    PyTypeObject *t = Py_TYPE(k);
    int rc;
    if (buf_byte(b, '[') < 0)
        return FAIL;
    if (t == &PyUnicode_Type) {
        rc = lua_str(b, k);
    } else if (k == TRUE_KEY || k == Py_True) {
        rc = PUT_LIT(b, "true");
    } else if (k == FALSE_KEY || k == Py_False) {
        rc = PUT_LIT(b, "false");
    } else if (t == &PyFloat_Type) {
        double x = PyFloat_AS_DOUBLE(k);
        if (isnan(x))
            return DECLINE; /* NaN cannot be a table key */
        if (x == floor(x) && x >= -9223372036854775808.0 && x < 9223372036854775808.0)
            rc = buf_int(b, (long long)x); /* Lua 5.4 keeps it as an integer key */
        else
            rc = lua_number(b, k);
    } else if (t == &PyLong_Type) {
        rc = lua_number(b, k);
    } else if (t == &PyBytes_Type) {
        rc = lua_bytes(b, (const unsigned char *)PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k));
    } else {
        return DECLINE;
    }
    if (rc < 0)
        return rc;
    return PUT_LIT(b, "] = ");
}

static int lua_value(Buf *b, PyObject *v, int depth);

/* One entry of a table at `depth`; `v` is not None. */
static int lua_entry(Buf *b, PyObject *k, PyObject *v, int depth, long long *next_index) {
    int rc;
    if (buf_indent(b, depth) < 0)
        return FAIL;
    if (k != NULL) { /* a dict entry; NULL: the next item of a list */
        PyTypeObject *t = Py_TYPE(k);
        int positional = 0;
        if (t == &PyLong_Type) {
            int overflow = 0;
            long long value = PyLong_AsLongLongAndOverflow(k, &overflow);
            if (value == -1 && PyErr_Occurred())
                return FAIL;
            positional = !overflow && value == *next_index;
        } else if (t == &PyFloat_Type) {
            positional = PyFloat_AS_DOUBLE(k) == (double)*next_index;
        }
        if (positional) {
            ++*next_index;
        } else {
            rc = lua_key(b, k);
            if (rc < 0)
                return rc;
        }
    } else {
        ++*next_index;
    }
    rc = lua_value(b, v, depth + 1);
    if (rc < 0)
        return rc;
    return buf_byte(b, ';');
}

/* A table whose own entries are indented by `depth` tabs. */
static int lua_table(Buf *b, PyObject *t, int depth) {
    long long next_index = 1;
    int had_items = 0;
    int rc;
    KeyKinds kinds = {0, 0, 0, 0};
    if (depth > WRITE_MAX_DEPTH)
        return DECLINE; /* the pure code raises (it catches cycles first) */
    if (buf_byte(b, '{') < 0)
        return FAIL;
    if (Py_TYPE(t) == &PyDict_Type) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(t, &pos, &k, &v)) {
            if (Py_TYPE(k) != &PyUnicode_Type) {
                rc = check_key(t, k, &kinds);
                if (rc < 0)
                    return rc;
            }
            if (v == Py_None)
                continue; /* nil: no entry */
            had_items = 1;
            rc = lua_entry(b, k, v, depth, &next_index);
            if (rc < 0)
                return rc;
        }
    } else {
        Py_ssize_t i, n = PySequence_Fast_GET_SIZE(t);
        PyObject **items = PySequence_Fast_ITEMS(t);
        for (i = 0; i < n; i++) {
            if (items[i] == Py_None) {
                /* a hole: later items get explicit keys, as in the pure code */
                Py_ssize_t j;
                for (j = i + 1; j < n; j++) {
                    if (items[j] == Py_None)
                        continue;
                    had_items = 1;
                    if (buf_indent(b, depth) < 0 || PUT_LIT(b, "[") < 0 ||
                        buf_int(b, (long long)j + 1) < 0 || PUT_LIT(b, "] = ") < 0)
                        return FAIL;
                    rc = lua_value(b, items[j], depth + 1);
                    if (rc < 0)
                        return rc;
                    if (buf_byte(b, ';') < 0)
                        return FAIL;
                }
                break;
            }
            had_items = 1;
            rc = lua_entry(b, NULL, items[i], depth, &next_index);
            if (rc < 0)
                return rc;
        }
    }
    if (had_items && buf_indent(b, depth - 1) < 0)
        return FAIL;
    return buf_byte(b, '}');
}

static int lua_value(Buf *b, PyObject *v, int depth) {
    if (is_table(v))
        return lua_table(b, v, depth);
    return lua_scalar(b, v);
}

/* ------------------------------------------------------------------------ */
/* Typed JSON of export.py (to_json, then its compact json encoder)         */

static const char HEX[] = "0123456789abcdef"; /* json writes \u00XX in lower case */
static unsigned char JSON_ESC_LEN[128]; /* 0: as it is; 2: \c; 6: \u00XX */

static void init_json_escapes(void) {
    int i;
    for (i = 0; i < 128; i++)
        JSON_ESC_LEN[i] = i < 0x20 ? 6 : 0;
    JSON_ESC_LEN['"'] = JSON_ESC_LEN['\\'] = 2;
    JSON_ESC_LEN['\b'] = JSON_ESC_LEN['\f'] = JSON_ESC_LEN['\n'] = 2;
    JSON_ESC_LEN['\r'] = JSON_ESC_LEN['\t'] = 2;
}

static inline char *json_escape_ascii(char *out, unsigned char c) {
    switch (c) {
    case '"': *out++ = '\\'; *out++ = '"'; break;
    case '\\': *out++ = '\\'; *out++ = '\\'; break;
    case '\b': *out++ = '\\'; *out++ = 'b'; break;
    case '\f': *out++ = '\\'; *out++ = 'f'; break;
    case '\n': *out++ = '\\'; *out++ = 'n'; break;
    case '\r': *out++ = '\\'; *out++ = 'r'; break;
    case '\t': *out++ = '\\'; *out++ = 't'; break;
    default:
        memcpy(out, "\\u00", 4);
        out[4] = HEX[c >> 4];
        out[5] = HEX[c & 15];
        out += 6;
    }
    return out;
}

/* The characters of a str (of one storage kind) as a JSON string body in
   UTF-8, a chunk at a time (6 bytes per character at most); DECLINE at a
   lone surrogate (not UTF-8: the pure code fails as it does). */
#define JSON_UCS_BODY(TYPE)                                                   \
    {                                                                         \
        const TYPE *p = (const TYPE *)data;                                   \
        while (done < n) {                                                    \
            Py_ssize_t end = n - done < CHUNK ? n : done + CHUNK;             \
            char *out;                                                        \
            if (buf_reserve(b, (end - done) * 6) < 0)                         \
                return FAIL;                                                  \
            out = b->data + b->len;                                           \
            for (; done < end; done++) {                                      \
                Py_UCS4 c = p[done];                                          \
                if (c < 0x80) {                                               \
                    if (JSON_ESC_LEN[c])                                      \
                        out = json_escape_ascii(out, (unsigned char)c);       \
                    else                                                      \
                        *out++ = (char)c;                                     \
                } else if (c < 0x800) {                                       \
                    *out++ = (char)(0xC0 | (c >> 6));                         \
                    *out++ = (char)(0x80 | (c & 0x3F));                       \
                } else if (c < 0x10000) {                                     \
                    if (c >= 0xD800 && c <= 0xDFFF)                           \
                        return DECLINE;                                       \
                    *out++ = (char)(0xE0 | (c >> 12));                        \
                    *out++ = (char)(0x80 | ((c >> 6) & 0x3F));                \
                    *out++ = (char)(0x80 | (c & 0x3F));                       \
                } else {                                                      \
                    *out++ = (char)(0xF0 | (c >> 18));                        \
                    *out++ = (char)(0x80 | ((c >> 12) & 0x3F));               \
                    *out++ = (char)(0x80 | ((c >> 6) & 0x3F));                \
                    *out++ = (char)(0x80 | (c & 0x3F));                       \
                }                                                             \
            }                                                                 \
            b->len = out - b->data;                                           \
        }                                                                     \
    }

/* An exact str as a JSON string, in UTF-8. */
static int json_str(Buf *b, PyObject *s) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(s), done = 0;
    const void *data = PyUnicode_DATA(s);
    if (buf_byte(b, '"') < 0)
        return FAIL;
    if (PyUnicode_IS_ASCII(s)) {
        const unsigned char *p = (const unsigned char *)data;
        while (done < n) {
            /* runs that need no escape are copied whole */
            Py_ssize_t run = done;
            while (run < n && JSON_ESC_LEN[p[run]] == 0)
                run++;
            if (buf_put(b, (const char *)p + done, run - done) < 0)
                return FAIL;
            done = run;
            if (done < n) {
                if (buf_reserve(b, 6) < 0)
                    return FAIL;
                b->len = json_escape_ascii(b->data + b->len, p[done]) - b->data;
                done++;
            }
        }
        return buf_byte(b, '"');
    }
    switch (PyUnicode_KIND(s)) {
    case PyUnicode_1BYTE_KIND:
        JSON_UCS_BODY(Py_UCS1)
        break;
    case PyUnicode_2BYTE_KIND:
        JSON_UCS_BODY(Py_UCS2)
        break;
    default:
        JSON_UCS_BODY(Py_UCS4)
    }
    return buf_byte(b, '"');
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* {"$bytes":"<base64>"} (base64.b64encode: standard alphabet, padded). */
static int json_bytes(Buf *b, const unsigned char *p, Py_ssize_t n) {
    Py_ssize_t i;
    char *out;
    if (n > (PY_SSIZE_T_MAX - 64) / 4 * 3) {
        PyErr_NoMemory();
        return FAIL;
    }
    if (PUT_LIT(b, "{\"$bytes\":\"") < 0 || buf_reserve(b, (n + 2) / 3 * 4 + 2) < 0)
        return FAIL;
    out = b->data + b->len;
    for (i = 0; i + 2 < n; i += 3) {
        unsigned int w = ((unsigned int)p[i] << 16) | ((unsigned int)p[i + 1] << 8) | p[i + 2];
        *out++ = B64[w >> 18];
        *out++ = B64[(w >> 12) & 63];
        *out++ = B64[(w >> 6) & 63];
        *out++ = B64[w & 63];
    }
    if (n - i == 1) {
        unsigned int w = (unsigned int)p[i] << 16;
        *out++ = B64[w >> 18];
        *out++ = B64[(w >> 12) & 63];
        *out++ = '=';
        *out++ = '=';
    } else if (n - i == 2) {
        unsigned int w = ((unsigned int)p[i] << 16) | ((unsigned int)p[i + 1] << 8);
        *out++ = B64[w >> 18];
        *out++ = B64[(w >> 12) & 63];
        *out++ = B64[(w >> 6) & 63];
        *out++ = '=';
    }
    *out++ = '"';
    *out++ = '}';
    b->len = out - b->data;
    return OK;
}

/* Any value but a table, as to_json + json write it. */
static int json_scalar(Buf *b, PyObject *v) {
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyUnicode_Type)
        return json_str(b, v);
    if (t == &PyLong_Type) {
        long long value;
        int rc = exact_long(v, &value);
        return rc < 0 ? rc : buf_int(b, value);
    }
    if (t == &PyFloat_Type) {
        double x = PyFloat_AS_DOUBLE(v);
        if (isnan(x))
            return PUT_LIT(b, "{\"$float\":\"nan\"}");
        if (isinf(x))
            return x > 0 ? PUT_LIT(b, "{\"$float\":\"inf\"}") : PUT_LIT(b, "{\"$float\":\"-inf\"}");
        return buf_double(b, x, 'r', 0, Py_DTSF_ADD_DOT_0); /* float.__repr__ */
    }
    if (v == Py_True || v == TRUE_KEY)
        return PUT_LIT(b, "true");
    if (v == Py_False || v == FALSE_KEY)
        return PUT_LIT(b, "false");
    if (v == Py_None)
        return PUT_LIT(b, "null");
    if (t == &PyBytes_Type)
        return json_bytes(b, (const unsigned char *)PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
    if (t == &PyByteArray_Type)
        return json_bytes(b, (const unsigned char *)PyByteArray_AS_STRING(v),
                          PyByteArray_GET_SIZE(v));
    return DECLINE;
}

static int json_value(Buf *b, PyObject *v, int depth);

/* A str key written as an object member (not one starting with "$"). */
static inline int is_member_name(PyObject *k) {
    return Py_TYPE(k) == &PyUnicode_Type &&
           !(PyUnicode_GET_LENGTH(k) > 0 && PyUnicode_READ_CHAR(k, 0) == '$');
}

/* The keys 1..n among a dict's other entries ("$array"), then the rest
   ("$pairs"), after the members already written (`any`: some were). */
static int json_rest(Buf *b, PyObject *d, Py_ssize_t rest_count, int depth, int any) {
    /* slot[i]: the value of the int key i (1 <= i <= rest_count), or NULL */
    PyObject *small[64];
    PyObject **slot = small;
    Py_ssize_t pos, n, i;
    PyObject *k, *v;
    int rc = OK, wrote_pair = 0;
    if (rest_count + 1 > (Py_ssize_t)(sizeof(small) / sizeof(small[0]))) {
        slot = PyMem_Calloc((size_t)rest_count + 1, sizeof(PyObject *));
        if (slot == NULL) {
            PyErr_NoMemory();
            return FAIL;
        }
    } else {
        memset(small, 0, sizeof(small));
    }
    pos = 0;
    while (PyDict_Next(d, &pos, &k, &v)) {
        if (Py_TYPE(k) == &PyLong_Type) {
            int overflow = 0;
            long long key = PyLong_AsLongLongAndOverflow(k, &overflow);
            if (key == -1 && PyErr_Occurred()) {
                rc = FAIL;
                goto done;
            }
            if (!overflow && key >= 1 && key <= rest_count)
                slot[key] = v;
        }
    }
    n = 0;
    while (n < rest_count && slot[n + 1] != NULL)
        n++;
    if (n) {
        if ((any && buf_byte(b, ',') < 0) || PUT_LIT(b, "\"$array\":[") < 0) {
            rc = FAIL;
            goto done;
        }
        for (i = 1; i <= n; i++) {
            if ((i > 1 && buf_byte(b, ',') < 0)) {
                rc = FAIL;
                goto done;
            }
            rc = json_value(b, slot[i], depth + 1);
            if (rc < 0)
                goto done;
        }
        if (buf_byte(b, ']') < 0) {
            rc = FAIL;
            goto done;
        }
        any = 1;
    }
    pos = 0;
    while (PyDict_Next(d, &pos, &k, &v)) {
        PyTypeObject *t = Py_TYPE(k);
        if (is_member_name(k))
            continue;
        if (t == &PyLong_Type) {
            int overflow = 0;
            long long key = PyLong_AsLongLongAndOverflow(k, &overflow);
            if (key == -1 && PyErr_Occurred()) {
                rc = FAIL;
                goto done;
            }
            if (!overflow && key >= 1 && key <= n)
                continue; /* in "$array" */
        }
        if (is_table(k)) {
            rc = DECLINE; /* a tuple key: to_json makes it a list */
            goto done;
        }
        if (!wrote_pair) {
            if ((any && buf_byte(b, ',') < 0) || PUT_LIT(b, "\"$pairs\":[") < 0) {
                rc = FAIL;
                goto done;
            }
            wrote_pair = 1;
        } else if (buf_byte(b, ',') < 0) {
            rc = FAIL;
            goto done;
        }
        if (buf_byte(b, '[') < 0) {
            rc = FAIL;
            goto done;
        }
        rc = json_scalar(b, k);
        if (rc < 0)
            goto done;
        if (buf_byte(b, ',') < 0) {
            rc = FAIL;
            goto done;
        }
        rc = json_value(b, v, depth + 1);
        if (rc < 0)
            goto done;
        if (buf_byte(b, ']') < 0) {
            rc = FAIL;
            goto done;
        }
    }
    if (wrote_pair && buf_byte(b, ']') < 0)
        rc = FAIL;
done:
    if (slot != small)
        PyMem_Free(slot);
    return rc;
}

static int json_value(Buf *b, PyObject *v, int depth) {
    PyTypeObject *t = Py_TYPE(v);
    int rc;
    if (t == &PyDict_Type) {
        Py_ssize_t pos = 0, rest = 0;
        PyObject *k, *x;
        int any = 0;
        if (depth >= WRITE_MAX_DEPTH)
            return DECLINE; /* export refuses it: import could not write it back */
        if (buf_byte(b, '{') < 0)
            return FAIL;
        while (PyDict_Next(v, &pos, &k, &x)) {
            if (!is_member_name(k)) {
                rest++;
                continue;
            }
            if (any && buf_byte(b, ',') < 0)
                return FAIL;
            any = 1;
            rc = json_str(b, k);
            if (rc < 0)
                return rc;
            if (buf_byte(b, ':') < 0)
                return FAIL;
            rc = json_value(b, x, depth + 1);
            if (rc < 0)
                return rc;
        }
        if (rest) {
            rc = json_rest(b, v, rest, depth, any);
            if (rc < 0)
                return rc;
        }
        return buf_byte(b, '}');
    }
    if (t == &PyList_Type || t == &PyTuple_Type) {
        Py_ssize_t i, n = PySequence_Fast_GET_SIZE(v);
        PyObject **items = PySequence_Fast_ITEMS(v);
        if (depth >= WRITE_MAX_DEPTH)
            return DECLINE;
        if (buf_byte(b, '[') < 0)
            return FAIL;
        for (i = 0; i < n; i++) {
            if (i && buf_byte(b, ',') < 0)
                return FAIL;
            rc = json_value(b, items[i], depth + 1);
            if (rc < 0)
                return rc;
        }
        return buf_byte(b, ']');
    }
    return json_scalar(b, v);
}

/* ------------------------------------------------------------------------ */
/* Typed JSON back to a stored value (export.decode_value), for import      */
/*                                                                          */
/* The input is what json's decoder makes of a record's value with          */
/* object_pairs_hook=export._Obj: objects are _Obj lists of (name, value)   */
/* tuples.  The scalar escapes ($bytes, $float) and every error are left to */
/* the pure code (DECLINE).  Tables are built by exactly the dict           */
/* operations _decode_table makes, in the same order, so that duplicate     */
/* members and keys equal in Python (True and 1) end as they do there.      */

typedef struct {
    PyTypeObject *obj_type; /* export._Obj */
} ImportCtx;

static int has_surrogate(PyObject *s) {
    Py_ssize_t i, n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    if (kind == PyUnicode_1BYTE_KIND)
        return 0;
    for (i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c >= 0xD800 && c <= 0xDFFF)
            return 1;
    }
    return 0;
}

/* Whether exact str `s` equals the ASCII text `lit`. */
static int str_is(PyObject *s, const char *lit) {
    return PyUnicode_IS_ASCII(s) && strcmp((const char *)PyUnicode_1BYTE_DATA(s), lit) == 0;
}

static int imp_value(PyObject *j, int depth, ImportCtx *ctx, PyObject **out);

/* table.pop(k, None) or table[k] = decode_value(v, depth + 1) */
static int imp_assign(PyObject *table, PyObject *k, PyObject *v, int depth, ImportCtx *ctx) {
    PyObject *value;
    int rc;
    if (v == Py_None) {
        int found = PyDict_Contains(table, k);
        if (found < 0)
            return FAIL;
        return found && PyDict_DelItem(table, k) < 0 ? FAIL : OK;
    }
    rc = imp_value(v, depth + 1, ctx, &value);
    if (rc < 0)
        return rc;
    rc = PyDict_SetItem(table, k, value) < 0 ? FAIL : OK;
    Py_DECREF(value);
    return rc;
}

/* A "$pairs" key: decode_value, then export._key (integral floats in the
   64-bit range become integers; nil, NaN and tables are errors). */
static int imp_key(PyObject *k, int depth, ImportCtx *ctx, PyObject **out) {
    PyObject *key;
    int rc = imp_value(k, depth + 1, ctx, &key);
    if (rc < 0)
        return rc;
    if (key == Py_None || Py_TYPE(key) == &PyList_Type || Py_TYPE(key) == &PyDict_Type) {
        Py_DECREF(key);
        return DECLINE;
    }
    if (Py_TYPE(key) == &PyFloat_Type) {
        double x = PyFloat_AS_DOUBLE(key);
        if (isnan(x)) {
            Py_DECREF(key);
            return DECLINE;
        }
        if (x == floor(x) && x >= -9223372036854775808.0 && x < 9223372036854775808.0) {
            Py_SETREF(key, PyLong_FromLongLong((long long)x));
            if (key == NULL)
                return FAIL;
        }
    }
    *out = key;
    return OK;
}

/* _decode_table: an object with its members, "$array" and "$pairs" in the
   order they stand. */
static int imp_table(PyObject *j, int depth, ImportCtx *ctx, PyObject **out) {
    Py_ssize_t i, n = PyList_GET_SIZE(j);
    PyObject *table = NULL, *keys = NULL; /* keys: the decoded "$pairs" keys, in order */
    int one_in = 0, zero_in = 0;          /* 1 / 0 among the number keys */
    Py_ssize_t next_key = 0;
    int rc = OK;
    /* first pass: check the shape, decode the keys of "$pairs" */
    for (i = 0; i < n && rc == OK; i++) {
        PyObject *pair = PyList_GET_ITEM(j, i), *name, *x;
        if (Py_TYPE(pair) != &PyTuple_Type || PyTuple_GET_SIZE(pair) != 2) {
            rc = DECLINE;
            break;
        }
        name = PyTuple_GET_ITEM(pair, 0);
        x = PyTuple_GET_ITEM(pair, 1);
        if (Py_TYPE(name) != &PyUnicode_Type) {
            rc = DECLINE;
            break;
        }
        if (PyUnicode_GET_LENGTH(name) == 0 || PyUnicode_READ_CHAR(name, 0) != '$') {
            if (has_surrogate(name))
                rc = DECLINE;
            continue;
        }
        if (str_is(name, "$array")) {
            Py_ssize_t m;
            if (Py_TYPE(x) != &PyList_Type) {
                rc = DECLINE;
                break;
            }
            for (m = 0; m < PyList_GET_SIZE(x); m++)
                if (PyList_GET_ITEM(x, m) == Py_None)
                    rc = DECLINE;
            if (PyList_GET_SIZE(x) > 0)
                one_in = 1;
        } else if (str_is(name, "$pairs")) {
            Py_ssize_t m;
            if (Py_TYPE(x) != &PyList_Type) {
                rc = DECLINE;
                break;
            }
            for (m = 0; m < PyList_GET_SIZE(x); m++) {
                PyObject *p = PyList_GET_ITEM(x, m), *key;
                if (Py_TYPE(p) != &PyList_Type || PyList_GET_SIZE(p) != 2)
                    rc = DECLINE;
                if (rc == OK && keys == NULL && (keys = PyList_New(0)) == NULL)
                    rc = FAIL;
                if (rc == OK)
                    rc = imp_key(PyList_GET_ITEM(p, 0), depth, ctx, &key);
                if (rc < 0)
                    break;
                if (Py_TYPE(key) == &PyLong_Type) {
                    long long value;
                    rc = exact_long(key, &value);
                    if (rc == OK && value == 1)
                        one_in = 1;
                    if (rc == OK && value == 0)
                        zero_in = 1;
                }
                if (rc == OK && PyList_Append(keys, key) < 0)
                    rc = FAIL;
                Py_DECREF(key);
                if (rc < 0)
                    break;
            }
        } else {
            rc = DECLINE; /* another "$" name: an error of the pure code */
        }
    }
    if (rc < 0)
        goto done;
    /* second pass: the entries, as _decode_table assigns them */
    table = PyDict_New();
    if (table == NULL) {
        rc = FAIL;
        goto done;
    }
    for (i = 0; i < n && rc == OK; i++) {
        PyObject *pair = PyList_GET_ITEM(j, i);
        PyObject *name = PyTuple_GET_ITEM(pair, 0), *x = PyTuple_GET_ITEM(pair, 1);
        Py_ssize_t m;
        if (PyUnicode_GET_LENGTH(name) == 0 || PyUnicode_READ_CHAR(name, 0) != '$') {
            rc = imp_assign(table, name, x, depth, ctx);
        } else if (str_is(name, "$array")) {
            for (m = 0; m < PyList_GET_SIZE(x) && rc == OK; m++) {
                PyObject *index = PyLong_FromSsize_t(m + 1);
                if (index == NULL) {
                    rc = FAIL;
                    break;
                }
                rc = imp_assign(table, index, PyList_GET_ITEM(x, m), depth, ctx);
                Py_DECREF(index);
            }
        } else {
            for (m = 0; m < PyList_GET_SIZE(x) && rc == OK; m++) {
                PyObject *key = PyList_GET_ITEM(keys, next_key++);
                if (key == Py_True && one_in)
                    key = TRUE_KEY;
                else if (key == Py_False && zero_in)
                    key = FALSE_KEY;
                rc = imp_assign(table, key, PyList_GET_ITEM(PyList_GET_ITEM(x, m), 1), depth, ctx);
            }
        }
    }
done:
    Py_XDECREF(keys);
    if (rc < 0) {
        Py_XDECREF(table);
        return rc;
    }
    *out = table;
    return OK;
}

static int imp_value(PyObject *j, int depth, ImportCtx *ctx, PyObject **out) {
    PyTypeObject *t = Py_TYPE(j);
    if (t == &PyUnicode_Type) {
        if (has_surrogate(j))
            return DECLINE;
    } else if (t == &PyLong_Type) {
        long long value;
        int rc = exact_long(j, &value);
        if (rc < 0)
            return rc;
    } else if (t == &PyList_Type) {
        Py_ssize_t i, n = PyList_GET_SIZE(j);
        PyObject *list;
        if (depth >= WRITE_MAX_DEPTH)
            return DECLINE;
        list = PyList_New(n);
        if (list == NULL)
            return FAIL;
        for (i = 0; i < n; i++) {
            PyObject *item = PyList_GET_ITEM(j, i), *value;
            int rc = item == Py_None ? DECLINE : imp_value(item, depth + 1, ctx, &value);
            if (rc < 0) {
                Py_DECREF(list);
                return rc;
            }
            PyList_SET_ITEM(list, i, value);
        }
        *out = list;
        return OK;
    } else if (t == ctx->obj_type) {
        if (PyList_GET_SIZE(j) == 1) {
            PyObject *pair = PyList_GET_ITEM(j, 0);
            if (Py_TYPE(pair) != &PyTuple_Type || PyTuple_GET_SIZE(pair) != 2 ||
                Py_TYPE(PyTuple_GET_ITEM(pair, 0)) != &PyUnicode_Type)
                return DECLINE;
            if (str_is(PyTuple_GET_ITEM(pair, 0), "$bytes") ||
                str_is(PyTuple_GET_ITEM(pair, 0), "$float"))
                return DECLINE; /* a scalar escape: left to the pure code */
        }
        if (depth >= WRITE_MAX_DEPTH)
            return DECLINE;
        return imp_table(j, depth, ctx, out);
    } else if (j != Py_None && t != &PyBool_Type && t != &PyFloat_Type) {
        return DECLINE;
    }
    *out = Py_NewRef(j);
    return OK;
}

/* ------------------------------------------------------------------------ */
/* Module functions                                                         */

/* The buffer as a result: bytes, or an ASCII str.  Frees the buffer. */
static PyObject *finish(Buf *b, int rc, int as_str) {
    PyObject *result = NULL;
    if (rc == OK) {
        if (as_str) {
            result = PyUnicode_New(b->len, 127);
            if (result != NULL)
                memcpy(PyUnicode_1BYTE_DATA(result), b->data, (size_t)b->len);
        } else if (b->bytes == NULL) {
            result = PyBytes_FromStringAndSize(b->data, b->len);
        } else if (_PyBytes_Resize(&b->bytes, b->len) == 0) {
            result = b->bytes; /* the buffer itself, trimmed */
            b->bytes = NULL;
        }
    } else if (rc == DECLINE) {
        if (PyErr_Occurred())
            PyErr_Clear();
        result = Py_NewRef(Py_None);
    }
    buf_free(b);
    return result;
}

static int lua_top(Buf *b, PyObject *value, int depth) {
    return is_table(value) ? lua_table(b, value, depth) : lua_scalar(b, value);
}

PyDoc_STRVAR(dumps_doc,
"dumps(value, depth=1, /)\n--\n\n"
"serialization.dumps(value) as a str, or None to let the pure code run.\n"
"A table is written as one whose entries are indented by depth tabs\n"
"(2 for an item of iter_dumps_list).");

static PyObject *cw_dumps(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Buf b;
    int depth = 1;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "dumps(value, depth=1)");
        return NULL;
    }
    if (nargs == 2) {
        long d = PyLong_AsLong(args[1]);
        if (d == -1 && PyErr_Occurred())
            return NULL;
        if (d < 1 || d > WRITE_MAX_DEPTH + 1) {
            PyErr_SetString(PyExc_ValueError, "depth out of range");
            return NULL;
        }
        depth = (int)d;
    }
    buf_init(&b);
    return finish(&b, lua_top(&b, args[0], depth), 1);
}

static PyObject *wrapped(PyObject *value, const char *head, Py_ssize_t head_len,
                         const char *tail, Py_ssize_t tail_len) {
    Buf b;
    int rc;
    buf_init(&b);
    rc = buf_put(&b, head, head_len);
    if (rc == OK)
        rc = lua_top(&b, value, 1);
    if (rc == OK)
        rc = buf_put(&b, tail, tail_len);
    return finish(&b, rc, 0);
}

PyDoc_STRVAR(dump_dat_doc,
"dump_dat(value, /)\n--\n\n"
"serialization.dump_dat(value), or None to let the pure code run.");

static PyObject *cw_dump_dat(PyObject *self, PyObject *value) {
    return wrapped(value, "return ", 7, ";\n", 2);
}

PyDoc_STRVAR(dump_item_doc,
"dump_item(value, /)\n--\n\n"
"serialization.dump_item(value), or None to let the pure code run.");

static PyObject *cw_dump_item(PyObject *self, PyObject *value) {
    return wrapped(value, "item(", 5, ");\n", 3);
}

PyDoc_STRVAR(export_json_doc,
"export_json(value, /)\n--\n\n"
"export.encode_value(value).encode('utf-8'), or None to let the pure code run.");

static PyObject *cw_export_json(PyObject *self, PyObject *value) {
    Buf b;
    buf_init(&b);
    return finish(&b, json_value(&b, value, 0), 0);
}

PyDoc_STRVAR(export_json_pull_doc,
"export_json_pull(iterator, prefix, limit, /)\n--\n\n"
"Encode the next items of iterator: (data, count, declined, exhausted).\n\n"
"data is prefix, then the export_json of count items joined by commas (None\n"
"is no item).  Items are taken one at a time until data holds limit bytes\n"
"or more, the iterator is exhausted (exhausted is True), or an item is left\n"
"to the pure code: declined is then (item,), not in data, else None.  An\n"
"error of the iterator is raised.");

static PyObject *cw_export_json_pull(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Buf b;
    PyObject *iterator, *item, *data, *declined = NULL;
    Py_ssize_t limit, count = 0;
    int rc, exhausted = 0;
    if (nargs != 3 || !PyIter_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "export_json_pull(iterator, prefix: bytes, limit: int)");
        return NULL;
    }
    iterator = args[0];
    limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    buf_init(&b);
    rc = buf_put(&b, PyBytes_AS_STRING(args[1]), PyBytes_GET_SIZE(args[1]));
    while (rc == OK) {
        Py_ssize_t mark = b.len;
        item = PyIter_Next(iterator); /* Python code may run: nothing borrowed is held */
        if (item == NULL) {
            if (PyErr_Occurred())
                rc = FAIL;
            exhausted = 1;
            break;
        }
        if (item == Py_None) {
            Py_DECREF(item);
            continue;
        }
        if (count)
            rc = buf_byte(&b, ',');
        if (rc == OK)
            rc = json_value(&b, item, 0);
        if (rc == DECLINE) {
            if (PyErr_Occurred())
                PyErr_Clear();
            b.len = mark; /* the item goes back to the caller */
            declined = PyTuple_Pack(1, item);
            rc = declined == NULL ? FAIL : OK;
            Py_DECREF(item);
            break;
        }
        Py_DECREF(item);
        if (rc == OK) {
            count++;
            if (b.len >= limit)
                break;
        }
    }
    if (rc != OK) {
        buf_free(&b);
        Py_XDECREF(declined);
        return NULL;
    }
    data = finish(&b, OK, 0);
    if (data == NULL) {
        Py_XDECREF(declined);
        return NULL;
    }
    return Py_BuildValue("(NnNO)", data, count, declined != NULL ? declined : Py_NewRef(Py_None),
                         exhausted ? Py_True : Py_False);
}

PyDoc_STRVAR(import_value_doc,
"import_value(j, obj_type, /)\n--\n\n"
"(export.decode_value(j),) for JSON parsed with object_pairs_hook=obj_type,\n"
"or None to let the pure code run.");

static PyObject *cw_import_value(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    ImportCtx ctx;
    PyObject *value, *result;
    int rc;
    if (nargs != 2 || !PyType_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "import_value(j, obj_type)");
        return NULL;
    }
    ctx.obj_type = (PyTypeObject *)args[1];
    if (!PyType_IsSubtype(ctx.obj_type, &PyList_Type)) {
        PyErr_SetString(PyExc_TypeError, "obj_type must be a list subclass");
        return NULL;
    }
    rc = imp_value(args[0], 0, &ctx, &value);
    if (rc == FAIL)
        return NULL;
    if (rc == DECLINE) {
        if (PyErr_Occurred())
            PyErr_Clear();
        Py_RETURN_NONE;
    }
    result = PyTuple_Pack(1, value);
    Py_DECREF(value);
    return result;
}

static PyMethodDef methods[] = {
    {"dumps", (PyCFunction)(void (*)(void))cw_dumps, METH_FASTCALL, dumps_doc},
    {"dump_dat", cw_dump_dat, METH_O, dump_dat_doc},
    {"dump_item", cw_dump_item, METH_O, dump_item_doc},
    {"export_json", cw_export_json, METH_O, export_json_doc},
    {"export_json_pull", (PyCFunction)(void (*)(void))cw_export_json_pull, METH_FASTCALL,
     export_json_pull_doc},
    {"import_value", (PyCFunction)(void (*)(void))cw_import_value, METH_FASTCALL, import_value_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "prosody_store._cwriter",
    "The writer in C (optional): Lua literals and export's typed JSON, or None to decline.",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__cwriter(void) {
    PyObject *m, *table;
    init_lua_escapes();
    init_json_escapes();
    table = PyImport_ImportModule("prosody_store._lua_table");
    if (table == NULL)
        return NULL;
    Py_XSETREF(TRUE_KEY, PyObject_GetAttrString(table, "TRUE_KEY"));
    Py_XSETREF(FALSE_KEY, PyObject_GetAttrString(table, "FALSE_KEY"));
    Py_DECREF(table);
    if (TRUE_KEY == NULL || FALSE_KEY == NULL)
        return NULL;
    m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "MAX_DEPTH", WRITE_MAX_DEPTH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
