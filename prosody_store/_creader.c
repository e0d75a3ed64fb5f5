/*
 * prosody_store._creader: a compiled reader for the Lua data literals that
 * Prosody writes (.dat "return {...};" and .list "item({...});"), optional at
 * install.
 *
 * It is only ever an accelerator for prosody_store.serialization: for any
 * input it either returns exactly the value the pure-Python reader returns
 * (same types, same key order, the same table-building rules as
 * prosody_store._lua_table.TableBuilder) or it declines, and the caller runs
 * the pure-Python code, which also produces every error message.  It declines
 * anything it is not sure about: comments, long strings, hexadecimal numerals,
 * expressions other than the three Prosody writes for inf and nan, NaN keys,
 * a boolean key in a table that also has the number key 1 or 0, tables nested
 * deeper than MAX_DEPTH, and every syntax error.
 *
 * Hand-written because no library reads Lua literals into Python objects with
 * these rules; it needs nothing beyond the CPython C API.  Every read is
 * bounds-checked, nesting is limited to MAX_DEPTH levels of recursion, and
 * every error path releases what it holds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#define MAX_DEPTH 128          /* tables nested deeper are declined */
#define FIELDS_PER_FLUSH 50    /* Lua's SETLIST batch size (see _lua_table.py) */
#define MAX_NUMERAL 400        /* longer numerals are declined */

/* A cache of short strings (keys and recurring values such as "name",
 * "attr", "jabber:client"): the same str object is handed out again, so that
 * it is created and hashed once.  Direct-mapped; only touched between calls
 * into Python (no pointer into it is held across one), so re-entrant use
 * from a finalizer stays safe under the GIL. */
#define CACHE_SLOTS 4096
#define CACHE_MAX_LEN 32

typedef struct {
    PyObject *str;
    Py_ssize_t len;
    unsigned char bytes[CACHE_MAX_LEN];
} CacheSlot;

static CacheSlot string_cache[CACHE_SLOTS];

typedef struct {
    Py_ssize_t newlines;       /* line breaks ("\n") passed so far */
    const unsigned char *start;
    const unsigned char *p;
    const unsigned char *end;
    unsigned char *buf;        /* scratch for strings with escapes */
    Py_ssize_t buf_size;
    unsigned char small[256];
} Reader;

/* Every function returning a PyObject* returns NULL both on a decline (no
 * exception set) and on a real error such as MemoryError (exception set);
 * the entry points tell the two apart with PyErr_Occurred(). */

static const double POW10[] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

static inline int is_space(int c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Byte classes, filled in at import: SPACE for Lua's whitespace, STOP for
 * the bytes that end a plain run inside a quoted string (both quotes, the
 * backslash and raw line breaks). */
enum { SPACE = 1, STOP = 2 };
static unsigned char byte_class[256];

static void init_byte_classes(void) {
    const char *space = " \t\n\r\f\v", *stop = "\"'\\\n\r";
    for (const char *c = space; *c; c++) byte_class[(unsigned char)*c] |= SPACE;
    for (const char *c = stop; *c; c++) byte_class[(unsigned char)*c] |= STOP;
}

static inline int is_digit(int c) { return c >= '0' && c <= '9'; }

static inline int is_name_start(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static inline int is_name_char(int c) { return is_name_start(c) || is_digit(c); }

static inline int hex_value(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Skip whitespace.  Returns 0 to decline (a comment, which the pure reader
 * handles), else 1. */
static inline int skip_space(Reader *r) {
    const unsigned char *p = r->p, *end = r->end;
    while (p < end && (byte_class[*p] & SPACE)) {
        r->newlines += *p == '\n';
        p++;
    }
    r->p = p;
    if (p + 1 < end && p[0] == '-' && p[1] == '-') return 0;
    return 1;
}

static inline int peek(Reader *r) { return r->p < r->end ? *r->p : -1; }

/* Whether the bytes at p (up to end) are the word w followed by no name character. */
static int at_word(const unsigned char *p, const unsigned char *end, const char *w, size_t n) {
    if ((size_t)(end - p) < n || memcmp(p, w, n) != 0) return 0;
    return p + n == end || !is_name_char(p[n]);
}

/* ------------------------------------------------------------------------ */
/* Strings */

static inline uint32_t hash_bytes(const unsigned char *s, Py_ssize_t n) {
    uint32_t h = 2166136261u;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
    return h ^ (uint32_t)n;
}

/* The bytes s[0:n] as Python does raw.decode("utf-8"), or bytes if they are
 * not valid UTF-8; ascii says that no byte is above 127.  New reference,
 * NULL with an exception on failure. */
static PyObject *make_text(const unsigned char *s, Py_ssize_t n, int ascii) {
    CacheSlot *slot = NULL;
    if (n <= CACHE_MAX_LEN) {
        slot = &string_cache[hash_bytes(s, n) & (CACHE_SLOTS - 1)];
        if (slot->str != NULL && slot->len == n && memcmp(slot->bytes, s, (size_t)n) == 0) {
            Py_INCREF(slot->str);
            return slot->str;
        }
    }
    PyObject *text;
    if (ascii) {
        text = PyUnicode_New(n, 127);
        if (text == NULL) return NULL;
        memcpy(PyUnicode_1BYTE_DATA(text), s, (size_t)n);
    } else {
        text = PyUnicode_DecodeUTF8((const char *)s, n, NULL);
        if (text == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) return NULL;
            PyErr_Clear();
            return PyBytes_FromStringAndSize((const char *)s, n);  /* not cached */
        }
    }
    if (slot != NULL) {
        PyObject *old = slot->str;
        Py_INCREF(text);
        slot->str = text;
        slot->len = n;
        memcpy(slot->bytes, s, (size_t)n);
        Py_XDECREF(old);
    }
    return text;
}

/* Make room for size bytes in r->buf, keeping what it holds. */
static int reserve(Reader *r, Py_ssize_t size) {
    if (size <= r->buf_size) return 1;
    Py_ssize_t new_size = r->buf_size * 2;
    if (new_size < size) new_size = size;
    unsigned char *fresh;
    if (r->buf == r->small) {
        fresh = PyMem_Malloc((size_t)new_size);
        if (fresh != NULL) memcpy(fresh, r->small, sizeof(r->small));
    } else {
        fresh = PyMem_Realloc(r->buf, (size_t)new_size);
    }
    if (fresh == NULL) { PyErr_NoMemory(); return 0; }
    r->buf = fresh;
    r->buf_size = new_size;
    return 1;
}

/* Lua 5.4's "\u{...}" as bytes (up to six, for codes below 2^31). */
static int lua_utf8(uint32_t code, unsigned char *out) {
    if (code < 0x80) { out[0] = (unsigned char)code; return 1; }
    unsigned char tmp[8];
    int n = 0;
    uint32_t limit = 0x3f;
    while (code > limit) {
        tmp[n++] = (unsigned char)(0x80 | (code & 0x3f));
        code >>= 6;
        limit >>= 1;
    }
    tmp[n++] = (unsigned char)(((~limit << 1) & 0xff) | code);
    for (int i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

/* The quoted string at r->p (on the quote). */
static PyObject *read_string(Reader *r) {
    const unsigned char *p = r->p, *end = r->end;
    unsigned char quote = *p++;
    const unsigned char *body = p;
    unsigned high = 0;  /* the bits of every byte, or-ed: 0x80 set if any is not ASCII */
    /* Fast path: no escape before the closing quote. */
    while (1) {
        while (p < end && !(byte_class[*p] & STOP)) high |= *p++;
        if (p >= end || *p != (quote ^ '"' ^ '\'')) break;
        p++;  /* the other quote */
    }
    if (p >= end || *p == '\n' || *p == '\r') return NULL;
    if (*p == quote) {
        r->p = p + 1;
        return make_text(body, p - body, !(high & 0x80));
    }
    /* Escapes: decode into the scratch buffer, grown as the text goes (an
     * escape gives at most 6 bytes). */
    Py_ssize_t n = p - body;
    if (!reserve(r, n + 64)) return NULL;
    memcpy(r->buf, body, (size_t)n);
    while (1) {
        /* A plain run, copied in one go. */
        const unsigned char *run = p;
        while (p < end && !(byte_class[*p] & STOP)) high |= *p++;
        if (p > run) {
            if (!reserve(r, n + (p - run) + 8)) return NULL;
            memcpy(r->buf + n, run, (size_t)(p - run));
            n += p - run;
        }
        if (p >= end) return NULL;
        unsigned char c = *p;
        if (c == quote) break;
        if (c == '\n' || c == '\r') return NULL;
        if (n + 8 > r->buf_size && !reserve(r, n + 8)) return NULL;
        if (c != '\\') { r->buf[n++] = c; p++; continue; }  /* the other quote */
        if (p + 1 >= end) return NULL;
        unsigned char e = p[1];
        p += 2;
        switch (e) {
        case 'a': r->buf[n++] = '\a'; break;
        case 'b': r->buf[n++] = '\b'; break;
        case 'f': r->buf[n++] = '\f'; break;
        case 'n': r->buf[n++] = '\n'; break;
        case 'r': r->buf[n++] = '\r'; break;
        case 't': r->buf[n++] = '\t'; break;
        case 'v': r->buf[n++] = '\v'; break;
        case '\\': case '"': case '\'': r->buf[n++] = e; break;
        case '\n':
            r->newlines++;
            r->buf[n++] = '\n';
            if (p < end && *p == '\r') p++;
            break;
        case '\r':
            r->buf[n++] = '\n';
            if (p < end && *p == '\n') { r->newlines++; p++; }
            break;
        case 'x': {
            if (end - p < 2) return NULL;
            int hi = hex_value(p[0]), lo = hex_value(p[1]);
            if (hi < 0 || lo < 0) return NULL;
            high |= r->buf[n++] = (unsigned char)(hi * 16 + lo);
            p += 2;
            break;
        }
        case 'z':
            while (p < end && (byte_class[*p] & SPACE)) r->newlines += *p++ == '\n';
            break;
        case 'u': {
            if (p >= end || *p != '{') return NULL;
            p++;
            uint32_t code = 0;
            int digits = 0;
            while (p < end && hex_value(*p) >= 0) {
                code = code * 16 + (uint32_t)hex_value(*p);
                if (code >= 0x80000000u) return NULL;  /* too large: the parser's error */
                p++;
                digits++;
            }
            if (digits == 0 || p >= end || *p != '}') return NULL;
            p++;
            if (code >= 0x80) high |= 0x80;
            n += lua_utf8(code, r->buf + n);
            break;
        }
        default:
            if (is_digit(e)) {
                unsigned value = (unsigned)(e - '0');
                for (int i = 0; i < 2 && p < end && is_digit(*p); i++) value = value * 10 + (unsigned)(*p++ - '0');
                if (value > 255) return NULL;
                high |= r->buf[n++] = (unsigned char)value;
                break;
            }
            return NULL;  /* an invalid escape: the parser's error */
        }
    }
    r->p = p + 1;
    return make_text(r->buf, n, !(high & 0x80));
}

/* ------------------------------------------------------------------------ */
/* Numbers */

/* The decimal numeral at r->p (on a digit).  Sets *text_len to its length.
 * Declines anything but digits[.digits][(e|E)[+-]digits] followed by a byte
 * that cannot continue a numeral (hexadecimal and malformed ones are the
 * parser's). */
static PyObject *read_numeral(Reader *r, Py_ssize_t *text_len) {
    const unsigned char *start = r->p, *p = r->p, *end = r->end;
    /* The value is mantissa * 10^(scale + exponent) while no digit is dropped. */
    uint64_t mantissa = 0;
    int significant = 0, dropped = 0;  /* digits kept in mantissa, nonzero-led digits beyond */
    long scale = 0;
    int is_float = 0;
    while (p < end && is_digit(*p)) {
        if (mantissa != 0 || *p != '0') {
            if (significant < 19) { mantissa = mantissa * 10 + (uint64_t)(*p - '0'); significant++; }
            else { dropped++; scale++; }
        }
        p++;
    }
    Py_ssize_t int_len = p - start;
    if (p < end && *p == '.') {
        is_float = 1;
        p++;
        while (p < end && is_digit(*p)) {
            if (mantissa == 0 && *p == '0') scale--;
            else if (significant < 19) { mantissa = mantissa * 10 + (uint64_t)(*p - '0'); significant++; scale--; }
            else dropped++;
            p++;
        }
    }
    long exponent = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        is_float = 1;
        p++;
        int negative = 0;
        if (p < end && (*p == '+' || *p == '-')) { negative = *p == '-'; p++; }
        if (p >= end || !is_digit(*p)) return NULL;
        while (p < end && is_digit(*p)) {
            if (exponent < 100000) exponent = exponent * 10 + (*p - '0');
            p++;
        }
        if (negative) exponent = -exponent;
    }
    if (p < end && (is_name_char(*p) || *p == '.')) return NULL;
    Py_ssize_t len = p - start;
    if (len > MAX_NUMERAL) return NULL;
    r->p = p;
    *text_len = len;
    if (!is_float) {
        if (int_len <= 19 && mantissa <= (uint64_t)INT64_MAX)
            return PyLong_FromLongLong((long long)mantissa);
        /* beyond 64 bits: Lua reads a float (falls through) */
    } else if (dropped == 0 && mantissa <= ((uint64_t)1 << 53)) {
        /* Exact: an integer below 2^53 times or divided by an exact power of
         * ten is one correctly rounded operation. */
        long e10 = exponent + scale;
        if (e10 >= -22 && e10 <= 22) {
            double d = (double)mantissa;
            d = e10 < 0 ? d / POW10[-e10] : d * POW10[e10];
            return PyFloat_FromDouble(d);
        }
    }
    char text[MAX_NUMERAL + 1];
    memcpy(text, start, (size_t)len);
    text[len] = '\0';
    char *stop = NULL;
    double d = PyOS_string_to_double(text, &stop, NULL);
    if (d == -1.0 && PyErr_Occurred()) return NULL;
    if (stop != text + len) return NULL;
    return PyFloat_FromDouble(d);
}

static const char INT_MIN_DIGITS[] = "9223372036854775808";

/* "-" and a numeral right after it, as Prosody writes negative numbers. */
static PyObject *read_negative(Reader *r) {
    r->p++;
    if (r->p >= r->end || !is_digit(*r->p)) return NULL;
    const unsigned char *digits = r->p;
    Py_ssize_t len = 0;
    PyObject *value = read_numeral(r, &len);
    if (value == NULL) return NULL;
    if (len == 1 && digits[0] == '0') {
        Py_DECREF(value);
        return PyFloat_FromDouble(-0.0);  /* as the parser reads "-0" */
    }
    if (len == 19 && memcmp(digits, INT_MIN_DIGITS, 19) == 0) {
        Py_DECREF(value);
        return PyLong_FromLongLong(INT64_MIN);
    }
    PyObject *negated = PyNumber_Negative(value);
    Py_DECREF(value);
    return negated;
}

/* "(1/0)", "(-1/0)" or "(0/0)", exactly as Prosody writes inf, -inf and nan. */
static PyObject *read_parenthesized(Reader *r) {
    const unsigned char *p = r->p;
    Py_ssize_t left = r->end - p;
    if (left >= 5 && memcmp(p, "(1/0)", 5) == 0) { r->p += 5; return PyFloat_FromDouble(Py_HUGE_VAL); }
    if (left >= 6 && memcmp(p, "(-1/0)", 6) == 0) { r->p += 6; return PyFloat_FromDouble(-Py_HUGE_VAL); }
    /* math.nan, whose sign bit is clear (Py_NAN may be computed with it set) */
    if (left >= 5 && memcmp(p, "(0/0)", 5) == 0) { r->p += 5; return PyFloat_FromDouble(fabs(Py_NAN)); }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Tables: prosody_store._lua_table.TableBuilder, for the cases it declines
 * nothing of. */

enum { KEY_STR, KEY_INT, KEY_BOOL, KEY_FLOAT };
enum { SEEN_0 = 1, SEEN_1 = 2, SEEN_FALSE = 4, SEEN_TRUE = 8 };

typedef struct {
    PyObject *list;       /* positional items, until the table becomes a dict */
    PyObject *dict;
    long long count;      /* positional items seen */
    long long flushed;    /* positional items Lua has already stored */
    int seen;             /* SEEN_* bits: which of the keys 0, 1, false, true were ever stored */
} Table;

static void table_clear(Table *t) {
    Py_CLEAR(t->list);
    Py_CLEAR(t->dict);
}

static inline void next_field(Table *t) {
    if (t->count - t->flushed >= FIELDS_PER_FLUSH) t->flushed = t->count;
}

static int to_dict(Table *t) {
    t->dict = PyDict_New();
    if (t->dict == NULL) return 0;
    if (t->list != NULL) {
        Py_ssize_t n = PyList_GET_SIZE(t->list);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *key = PyLong_FromSsize_t(i + 1);
            if (key == NULL) return 0;
            int rc = PyDict_SetItem(t->dict, key, PyList_GET_ITEM(t->list, i));
            Py_DECREF(key);
            if (rc < 0) return 0;
        }
        if (n) t->seen |= SEEN_1;
        Py_CLEAR(t->list);
    }
    return 1;
}

/* d[key] = value, or pop key for nil.  Declines (0, no exception) where a
 * boolean key and the number key 1 or 0 would meet. */
static int assign(Table *t, PyObject *key, int kind, long long ival, PyObject *value) {
    if (kind == KEY_BOOL) {
        int is_true = key == Py_True;
        if (t->seen & (is_true ? SEEN_1 : SEEN_0)) return 0;
        t->seen |= is_true ? SEEN_TRUE : SEEN_FALSE;
    } else if (kind == KEY_INT && (ival == 0 || ival == 1)) {
        if (t->seen & (ival ? SEEN_TRUE : SEEN_FALSE)) return 0;
        t->seen |= ival ? SEEN_1 : SEEN_0;
    }
    if (value == Py_None) {
        if (PyDict_DelItem(t->dict, key) < 0) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError)) return 0;
            PyErr_Clear();
        }
        return 1;
    }
    return PyDict_SetItem(t->dict, key, value) == 0;
}

/* Consumes the reference to value. */
static int positional(Table *t, PyObject *value) {
    next_field(t);
    t->count++;
    if (t->dict == NULL) {
        if (value != Py_None) {
            if (t->list == NULL && (t->list = PyList_New(0)) == NULL) { Py_DECREF(value); return 0; }
            int rc = PyList_Append(t->list, value);
            Py_DECREF(value);
            return rc == 0;
        }
        if (!to_dict(t)) { Py_DECREF(value); return 0; }
    }
    PyObject *key = PyLong_FromLongLong(t->count);
    if (key == NULL) { Py_DECREF(value); return 0; }
    int ok = assign(t, key, KEY_INT, t->count, value);
    Py_DECREF(key);
    Py_DECREF(value);
    return ok;
}

/* Consumes neither reference. */
static int keyed(Table *t, PyObject *key, int kind, long long ival, PyObject *value) {
    next_field(t);
    if (t->dict == NULL && !to_dict(t)) return 0;
    if (kind == KEY_INT && t->flushed < ival && ival <= t->count)
        return 1;  /* a positional item not yet flushed will overwrite it */
    return assign(t, key, kind, ival, value);
}

/* The finished table: a list for keys 1..n, else the dict.  Steals t's references. */
static PyObject *table_result(Table *t) {
    if (t->dict == NULL) {
        PyObject *list = t->list;
        t->list = NULL;
        if (list != NULL && PyList_GET_SIZE(list) > 0) return list;
        Py_XDECREF(list);
        return PyDict_New();
    }
    PyObject *d = t->dict;
    t->dict = NULL;
    Py_ssize_t n = PyDict_GET_SIZE(d);
    if (n == 0) return d;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    long long lo = 0, hi = 0;
    int first = 1;
    while (PyDict_Next(d, &pos, &key, &value)) {
        if (!PyLong_CheckExact(key)) return d;
        int overflow = 0;
        long long k = PyLong_AsLongLongAndOverflow(key, &overflow);
        if (overflow) return d;
        if (first || k < lo) lo = k;
        if (first || k > hi) hi = k;
        first = 0;
    }
    if (lo != 1 || hi != n) return d;
    PyObject *list = PyList_New(n);
    if (list == NULL) { Py_DECREF(d); return NULL; }
    pos = 0;
    while (PyDict_Next(d, &pos, &key, &value)) {
        Py_ssize_t i = (Py_ssize_t)PyLong_AsLongLong(key) - 1;
        Py_INCREF(value);
        PyList_SET_ITEM(list, i, value);
    }
    Py_DECREF(d);
    return list;
}

static PyObject *read_value(Reader *r, int depth);

/* A bracketed key "[...]" at r->p: sets *kind and *ival; new reference. */
static PyObject *read_key(Reader *r, int *kind, long long *ival) {
    r->p++;
    if (!skip_space(r)) return NULL;
    int c = peek(r);
    PyObject *key = NULL;
    if (c == '"' || c == '\'') {
        key = read_string(r);
        *kind = KEY_STR;
    } else if (is_digit(c) || c == '-' || c == '(') {
        Py_ssize_t len;
        key = c == '-' ? read_negative(r) : c == '(' ? read_parenthesized(r) : read_numeral(r, &len);
        if (key == NULL) return NULL;
        if (PyFloat_CheckExact(key)) {
            /* As the parser's _check_key: integral floats in range become integers. */
            double d = PyFloat_AS_DOUBLE(key);
            if (d != d) { Py_DECREF(key); return NULL; }  /* NaN: the parser's error */
            if (!(d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0)) {
                *kind = KEY_FLOAT;
                goto close;
            }
            Py_DECREF(key);
            key = PyLong_FromLongLong((long long)d);
            if (key == NULL) return NULL;
        }
        *kind = KEY_INT;
        *ival = PyLong_AsLongLong(key);  /* within 64 bits: read_numeral made it */
        if (*ival == -1 && PyErr_Occurred()) { Py_DECREF(key); return NULL; }
    } else if (at_word(r->p, r->end, "true", 4)) {
        r->p += 4;
        key = Py_NewRef(Py_True);
        *kind = KEY_BOOL;
    } else if (at_word(r->p, r->end, "false", 5)) {
        r->p += 5;
        key = Py_NewRef(Py_False);
        *kind = KEY_BOOL;
    } else {
        return NULL;
    }
    if (key == NULL) return NULL;
close:
    if (!skip_space(r) || peek(r) != ']') { Py_DECREF(key); return NULL; }
    r->p++;
    if (!skip_space(r) || peek(r) != '=') { Py_DECREF(key); return NULL; }
    r->p++;
    if (!skip_space(r)) { Py_DECREF(key); return NULL; }
    return key;
}

static const char *const KEYWORDS[] = {
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
    "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while", NULL,
};

static int is_keyword(const unsigned char *s, Py_ssize_t n) {
    for (int i = 0; KEYWORDS[i] != NULL; i++) {
        if ((Py_ssize_t)strlen(KEYWORDS[i]) == n && memcmp(KEYWORDS[i], s, (size_t)n) == 0) return 1;
    }
    return 0;
}

/* The table at r->p (on "{"); depth counts this table. */
static PyObject *read_table(Reader *r, int depth) {
    if (depth > MAX_DEPTH) return NULL;
    r->p++;
    Table t = {NULL, NULL, 0, 0, 0};
    while (1) {
        if (!skip_space(r)) goto fail;
        int c = peek(r);
        if (c == '}') {
            r->p++;
            return table_result(&t);
        }
        PyObject *key = NULL;
        int kind = KEY_STR;
        long long ival = 0;
        if (c == '[') {
            if (r->p + 1 < r->end && (r->p[1] == '[' || r->p[1] == '=')) goto fail;  /* long string */
            key = read_key(r, &kind, &ival);
            if (key == NULL) goto fail;
        } else if (is_name_start(c)) {
            const unsigned char *name = r->p, *q = r->p;
            Py_ssize_t newlines = r->newlines;
            while (q < r->end && is_name_char(*q)) q++;
            Py_ssize_t n = q - name;
            r->p = q;
            if (!skip_space(r)) goto fail;
            if (peek(r) == '=' && !(r->p + 1 < r->end && r->p[1] == '=') && !is_keyword(name, n)) {
                key = make_text(name, n, 1);
                if (key == NULL) goto fail;
                r->p++;
                if (!skip_space(r)) { Py_DECREF(key); goto fail; }
            } else {
                r->p = name;  /* a value: true, false or nil */
                r->newlines = newlines;
            }
        } else if (c < 0) {
            goto fail;
        }
        PyObject *value = read_value(r, depth);
        if (value == NULL) { Py_XDECREF(key); goto fail; }
        int ok;
        if (key == NULL) {
            ok = positional(&t, value);
        } else {
            ok = keyed(&t, key, kind, ival, value);
            Py_DECREF(key);
            Py_DECREF(value);
        }
        if (!ok) goto fail;
        if (!skip_space(r)) goto fail;
        c = peek(r);
        if (c == ',' || c == ';') r->p++;
        else if (c != '}') goto fail;
    }
fail:
    table_clear(&t);
    return NULL;
}

/* One value at r->p (whitespace skipped); depth is that of the enclosing table. */
static PyObject *read_value(Reader *r, int depth) {
    int c = peek(r);
    switch (c) {
    case '{': return read_table(r, depth + 1);
    case '"': case '\'': return read_string(r);
    case '-': return read_negative(r);
    case '(': return read_parenthesized(r);
    case 't':
        if (at_word(r->p, r->end, "true", 4)) { r->p += 4; Py_RETURN_TRUE; }
        return NULL;
    case 'f':
        if (at_word(r->p, r->end, "false", 5)) { r->p += 5; Py_RETURN_FALSE; }
        return NULL;
    case 'n':
        if (at_word(r->p, r->end, "nil", 3)) { r->p += 3; Py_RETURN_NONE; }
        return NULL;
    default:
        if (is_digit(c)) {
            Py_ssize_t len;
            return read_numeral(r, &len);
        }
        return NULL;
    }
}

/* ------------------------------------------------------------------------ */
/* Entry points */

static void reader_init(Reader *r, const Py_buffer *view) {
    r->newlines = 0;
    r->start = r->p = (const unsigned char *)view->buf;
    r->end = r->start + view->len;
    r->buf = r->small;
    r->buf_size = (Py_ssize_t)sizeof(r->small);
}

static void reader_free(Reader *r) {
    if (r->buf != r->small) PyMem_Free(r->buf);
    r->buf = r->small;
}

PyDoc_STRVAR(read_value_doc,
"read_value(src) -> (ok, value)\n\n"
"The value of a whole ``return <value>;`` text (``return`` and ``;`` optional):\n"
"``(True, value)``, exactly as the pure-Python reader gives it, or ``(False, None)``\n"
"to decline (anything unusual, and every error).");

static PyObject *py_read_value(PyObject *module, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Reader r;
    reader_init(&r, &view);
    PyObject *value = NULL;
    if (skip_space(&r)) {
        if (at_word(r.p, r.end, "return", 6)) {
            r.p += 6;
            if (!skip_space(&r)) goto done;
        }
        int c = peek(&r);
        if (c < 0 || c == ';') goto done;  /* no value: the parser's answer */
        value = read_value(&r, 0);
        if (value == NULL) goto done;
        if (skip_space(&r) && peek(&r) == ';') {
            r.p++;
        }
        if (!skip_space(&r) || r.p != r.end) Py_CLEAR(value);
    }
done:
    reader_free(&r);
    PyBuffer_Release(&view);
    if (value == NULL) {
        if (PyErr_Occurred()) return NULL;
        return Py_BuildValue("(OO)", Py_False, Py_None);
    }
    PyObject *result = PyTuple_Pack(2, Py_True, value);
    Py_DECREF(value);
    return result;
}

/* Appends the statements' items (and with starts, their offsets plus base).
 * Returns 1, or 0 to decline or on error. */
static int read_statements(Reader *r, PyObject *items, PyObject *starts, long long base) {
    while (1) {
        /* Separators: whitespace and empty statements. */
        while (1) {
            if (!skip_space(r)) return 0;
            if (peek(r) != ';') break;
            r->p++;
        }
        if (r->p >= r->end) return 1;
        if (!at_word(r->p, r->end, "item", 4)) return 0;
        long long start = base + (long long)(r->p - r->start);
        r->p += 4;
        if (!skip_space(r)) return 0;
        int c = peek(r);
        PyObject *value;
        if (c == '(') {
            r->p++;
            if (!skip_space(r)) return 0;
            if (peek(r) == ')') {
                value = Py_NewRef(Py_None);
            } else {
                value = read_value(r, 0);
                if (value == NULL) return 0;
                if (!skip_space(r) || peek(r) != ')') { Py_DECREF(value); return 0; }
            }
            r->p++;
        } else if (c == '{' || c == '"' || c == '\'') {
            value = read_value(r, 0);
            if (value == NULL) return 0;
        } else {
            return 0;
        }
        if (value == Py_None) { Py_DECREF(value); continue; }
        int rc = PyList_Append(items, value);
        Py_DECREF(value);
        if (rc < 0) return 0;
        if (starts != NULL) {
            PyObject *offset = PyLong_FromLongLong(start);
            if (offset == NULL) return 0;
            rc = PyList_Append(starts, offset);
            Py_DECREF(offset);
            if (rc < 0) return 0;
        }
    }
}

PyDoc_STRVAR(read_items_doc,
"read_items(segment, base) -> (starts, items, newlines) | None\n\n"
"The items of a text of whole ``item(...)`` statements, those the pure-Python\n"
"reader yields (``item()`` and ``item(nil)`` yield none), or None to decline.\n"
"With ``base`` an int, ``starts`` is the offset of each item's statement plus\n"
"``base``; with ``base`` None, ``starts`` is None.  ``newlines`` is\n"
"``segment.count(b'\\n')``, counted on the way.");

static PyObject *py_read_items(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read_items() takes exactly 2 arguments");
        return NULL;
    }
    long long base = 0;
    int want_starts = args[1] != Py_None;
    if (want_starts) {
        base = PyLong_AsLongLong(args[1]);
        if (base == -1 && PyErr_Occurred()) return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    Reader r;
    reader_init(&r, &view);
    PyObject *items = PyList_New(0);
    PyObject *starts = want_starts ? PyList_New(0) : Py_NewRef(Py_None);
    PyObject *result = NULL;
    if (items != NULL && starts != NULL
            && read_statements(&r, items, want_starts ? starts : NULL, base)) {
        result = Py_BuildValue("(OOn)", starts, items, r.newlines);
    }
    Py_XDECREF(items);
    Py_XDECREF(starts);
    reader_free(&r);
    PyBuffer_Release(&view);
    if (result == NULL && !PyErr_Occurred()) Py_RETURN_NONE;
    return result;
}

/* ------------------------------------------------------------------------ */
/* archive expire: an item's own "when", placed from its bytes
 *
 * item_when() does in one pass what prosody_store.archive does with two
 * patterns (PROSODY_ITEM and _TOP_WHEN): it checks that the bytes are one
 * item in the layout Prosody writes, every line indented by exactly its
 * depth (so the braces balance and a line "\t["when"] = <number>;" is the
 * item table's own entry), and reads that number.  It declines (None)
 * wherever the Python path would go to the full reader, and whenever it is
 * not sure.  No recursion, no allocation but the returned number; every
 * byte is read through a bounds check against the item's end. */

#define WHEN_MAX_NUMERAL 64  /* longer numerals are declined */

/* The end of the short string at p (on its '"'), as archive._STRING takes
 * it: no raw line break or carriage return; escapes \a \b \f \n \r \t \v \\
 * \" \', a backslash before a line break, and one to three decimal digits
 * (three only up to 255).  NULL if it is not one. */
static const unsigned char *layout_string(const unsigned char *p, const unsigned char *end) {
    p++;
    while (p < end) {
        unsigned char c = *p;
        if (c == '"') return p + 1;
        if (c == '\n' || c == '\r') return NULL;
        p++;
        if (c != '\\') continue;
        if (p >= end) return NULL;
        c = *p++;
        if (is_digit(c)) {
            int value = c - '0';
            for (int digits = 1; digits < 3 && p < end && is_digit(*p); digits++)
                value = value * 10 + (*p++ - '0');
            if (value > 255) return NULL;
            continue;
        }
        switch (c) {
        case 'a': case 'b': case 'f': case 'n': case 'r': case 't': case 'v':
        case '\\': case '"': case '\'': case '\n':
            break;
        default:
            return NULL;
        }
    }
    return NULL;
}

/* The end of the key "[...] = " at p (on its '['), as archive._KEY takes it:
 * a string without escapes or an optionally negative run of digits.  Sets
 * *is_when when the key is the string "when".  NULL if it is not one. */
static const unsigned char *layout_key(const unsigned char *p, const unsigned char *end,
                                       int *is_when) {
    p++;
    if (p >= end) return NULL;
    if (*p == '"') {
        const unsigned char *text = ++p;
        while (p < end && *p != '"' && *p != '\\' && *p != '\n' && *p != '\r') p++;
        if (p >= end || *p != '"') return NULL;
        *is_when = p - text == 4 && memcmp(text, "when", 4) == 0;
        p++;
    } else {
        if (*p == '-') p++;
        const unsigned char *digits = p;
        while (p < end && is_digit(*p)) p++;
        if (p == digits) return NULL;
    }
    if (end - p < 4 || memcmp(p, "] = ", 4) != 0) return NULL;
    return p + 4;
}

/* The end of the numeral at p, as archive._NUMBER takes it:
 * -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][-+]?[0-9]+)?.  Sets *is_float when it has
 * a point or an exponent.  NULL if none starts there.  (A numeral that goes
 * on, such as "01" or "1.", is left to the ";\n" check that follows.) */
static const unsigned char *layout_number(const unsigned char *p, const unsigned char *end,
                                          int *is_float) {
    *is_float = 0;
    if (p < end && *p == '-') p++;
    if (p >= end || !is_digit(*p)) return NULL;
    if (*p == '0') p++;
    else while (p < end && is_digit(*p)) p++;
    if (end - p >= 2 && *p == '.' && is_digit(p[1])) {
        *is_float = 1;
        p += 2;
        while (p < end && is_digit(*p)) p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        const unsigned char *q = p + 1;
        if (q < end && (*q == '-' || *q == '+')) q++;
        if (q < end && is_digit(*q)) {
            *is_float = 1;
            while (q < end && is_digit(*q)) q++;
            p = q;
        }
    }
    return p;
}

/* Whether buf[start:end] is one whole item as archive.PROSODY_ITEM takes it
 * (the non-empty form), with exactly one top-level "when" entry whose value
 * is a numeral: then *when and *when_len are that numeral, *is_float as
 * layout_number.  0 for anything else. */
static int layout_item(const unsigned char *p, const unsigned char *end,
                       const unsigned char **when, Py_ssize_t *when_len, int *is_float) {
    *when = NULL;
    if (end - p < 7 || memcmp(p, "item({\n", 7) != 0) return 0;
    p += 7;
    Py_ssize_t want = 1;  /* the indent of the next line: its depth */
    int may_close = 0;    /* it may instead close its table, one tab less deep */
    while (1) {
        const unsigned char *line = p;
        while (p < end && *p == '\t') p++;
        Py_ssize_t tabs = p - line;
        if (p >= end) return 0;
        unsigned char c = *p;
        if (c == '}' && may_close && tabs == want - 1) {
            if (tabs == 0)  /* the item's own end */
                return end - p == 4 && memcmp(p, "});\n", 4) == 0 && *when != NULL;
            if (end - p < 3 || memcmp(p, "};\n", 3) != 0) return 0;
            p += 3;
            want = tabs;
            continue;
        }
        if (tabs != want || c == '}' || c == '\n') return 0;
        int is_when = 0;
        if (c == '[') {
            p = layout_key(p, end, &is_when);
            if (p == NULL || p >= end) return 0;
            c = *p;
        }
        if (is_when && tabs == 1) {
            if (*when != NULL) return 0;  /* repeated */
            const unsigned char *numeral = p;
            p = layout_number(p, end, is_float);
            if (p == NULL) return 0;  /* not a number: the full reader's */
            *when = numeral;
            *when_len = p - numeral;
        } else if (c == '"') {
            p = layout_string(p, end);
        } else if (c == '{') {
            if (end - p >= 2 && p[1] == '\n') {  /* a table, one line per entry */
                p += 2;
                want = tabs + 1;
                may_close = 0;
                continue;
            }
            p = end - p >= 2 && p[1] == '}' ? p + 2 : NULL;
        } else if (at_word(p, end, "true", 4)) {
            p += 4;
        } else if (at_word(p, end, "false", 5)) {
            p += 5;
        } else {
            int ignored;
            p = layout_number(p, end, &ignored);
        }
        if (p == NULL || end - p < 2 || p[0] != ';' || p[1] != '\n') return 0;
        p += 2;
        want = tabs;
        may_close = 1;
    }
}

/* The numeral s[0:n] as archive._when_value reads it: a float when it has a
 * point or an exponent, or an integer beyond 64 bits; else an int.  NULL
 * without an exception to decline (too long). */
static PyObject *when_number(const unsigned char *s, Py_ssize_t n, int is_float) {
    if (n >= WHEN_MAX_NUMERAL) return NULL;
    if (!is_float) {
        int negative = s[0] == '-';
        Py_ssize_t digits = n - negative;
        if (digits <= 19) {
            uint64_t value = 0;
            for (Py_ssize_t i = negative; i < n; i++) value = value * 10 + (uint64_t)(s[i] - '0');
            if (!negative && value <= (uint64_t)INT64_MAX)
                return PyLong_FromLongLong((long long)value);
            if (negative && value <= (uint64_t)INT64_MAX + 1)
                return PyLong_FromLongLong(value == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(long long)value);
        }
    }
    char text[WHEN_MAX_NUMERAL];
    memcpy(text, s, (size_t)n);
    text[n] = '\0';
    double d = PyOS_string_to_double(text, NULL, NULL);
    if (d == -1.0 && PyErr_Occurred()) return NULL;
    return PyFloat_FromDouble(d);
}

PyDoc_STRVAR(item_when_doc,
"item_when(buf, start, end, limit) -> int | float | None\n\n"
"The top-level ``when`` of the item ``buf[start:end]`` as prosody_store.archive\n"
"places it from the bytes (the item in Prosody's layout, exactly one top-level\n"
"``when`` line, a numeral), or None to decline: then the Python path decides.\n"
"``buf[end:limit]`` is looked at only to decline where a line\n"
"``\\t[\"when\"] = `` starts at ``end`` (the Python path would count it).");

static PyObject *py_item_when(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "item_when() takes exactly 4 arguments");
        return NULL;
    }
    Py_ssize_t bounds[3];
    for (int i = 0; i < 3; i++) {
        bounds[i] = PyLong_AsSsize_t(args[i + 1]);
        if (bounds[i] == -1 && PyErr_Occurred()) return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t start = bounds[0], end = bounds[1], limit = bounds[2];
    if (start < 0 || start > end || end > limit || limit > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "item_when() needs 0 <= start <= end <= limit <= len(buf)");
        return NULL;
    }
    const unsigned char *base = (const unsigned char *)view.buf;
    const unsigned char *when;
    Py_ssize_t when_len = 0;
    int is_float = 0;
    PyObject *result = NULL;
    if (layout_item(base + start, base + end, &when, &when_len, &is_float)
            && !(limit - end >= 12 && memcmp(base + end, "\t[\"when\"] = ", 12) == 0))
        result = when_number(when, when_len, is_float);
    PyBuffer_Release(&view);
    if (result == NULL && !PyErr_Occurred()) Py_RETURN_NONE;
    return result;
}

static PyMethodDef methods[] = {
    {"read_value", (PyCFunction)py_read_value, METH_O, read_value_doc},
    {"read_items", (PyCFunction)(void (*)(void))py_read_items, METH_FASTCALL, read_items_doc},
    {"item_when", (PyCFunction)(void (*)(void))py_item_when, METH_FASTCALL, item_when_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "prosody_store._creader",
    "Compiled reader for Prosody's Lua data files (an optional accelerator; see serialization.py).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__creader(void) {
    init_byte_classes();
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0) { Py_DECREF(m); return NULL; }
    return m;
}
