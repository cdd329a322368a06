/* printf.c: printf-style formatting (%d %i %u %x %X %o %p %s %c %%, l/ll/z/h, flags - 0 # +, width, precision). */
#include "runtime.h"

struct out {
    char *buf;
    size_t size;
    size_t len;
};

static void put(struct out *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void pad(struct out *o, char c, int n)
{
    while (n-- > 0)
        put(o, c);
}

static void emit_number(struct out *o, uint64_t v, int neg, unsigned base, int upper, int width, int prec,
                        int left, int zero, int alt, int plus)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int n = 0, len, zeros;
    char sign = neg ? '-' : plus ? '+' : 0;
    const char *prefix = "";

    if (v == 0 && prec == 0)
        n = 0;
    else
        do {
            tmp[n++] = digits[v % base];
            v /= base;
        } while (v);
    if (alt && base == 16)
        prefix = upper ? "0X" : "0x";
    else if (alt && base == 8 && (n == 0 || tmp[n - 1] != '0'))
        prefix = "0";
    zeros = prec > n ? prec - n : 0;
    len = n + zeros + (sign ? 1 : 0) + (int)strlen(prefix);
    if (zero && !left && prec < 0 && width > len) {
        zeros += width - len;
        len = width;
    }
    if (!left)
        pad(o, ' ', width - len);
    if (sign)
        put(o, sign);
    while (*prefix)
        put(o, *prefix++);
    pad(o, '0', zeros);
    while (n > 0)
        put(o, tmp[--n]);
    if (left)
        pad(o, ' ', width - len);
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct out o = { buf, size, 0 };

    while (*fmt) {
        int left = 0, zero = 0, alt = 0, plus = 0, width = 0, prec = -1, lng = 0;
        char c = *fmt++;

        if (c != '%') {
            put(&o, c);
            continue;
        }
        for (;; fmt++) {
            if (*fmt == '-')
                left = 1;
            else if (*fmt == '0')
                zero = 1;
            else if (*fmt == '#')
                alt = 1;
            else if (*fmt == '+')
                plus = 1;
            else
                break;
        }
        if (*fmt == '*') {
            width = va_arg(ap, int);
            if (width < 0) {
                left = 1;
                width = -width;
            }
            fmt++;
        } else
            while (*fmt >= '0' && *fmt <= '9')
                width = width * 10 + (*fmt++ - '0');
        if (*fmt == '.') {
            fmt++;
            prec = 0;
            if (*fmt == '*') {
                prec = va_arg(ap, int);
                fmt++;
            } else
                while (*fmt >= '0' && *fmt <= '9')
                    prec = prec * 10 + (*fmt++ - '0');
        }
        for (;; fmt++) {
            if (*fmt == 'l' || *fmt == 'z' || *fmt == 'j' || *fmt == 't')
                lng = 1;
            else if (*fmt != 'h')
                break;
        }
        c = *fmt ? *fmt++ : 0;
        switch (c) {
        case 'd':
        case 'i': {
            int64_t v = lng ? va_arg(ap, long) : va_arg(ap, int);
            uint64_t mag = v < 0 ? -(uint64_t)v : (uint64_t)v;

            emit_number(&o, mag, v < 0, 10, 0, width, prec, left, zero, 0, plus);
            break;
        }
        case 'u':
        case 'x':
        case 'X':
        case 'o': {
            uint64_t v = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
            unsigned base = c == 'u' ? 10 : c == 'o' ? 8 : 16;

            emit_number(&o, v, 0, base, c == 'X', width, prec, left, zero, alt, 0);
            break;
        }
        case 'p':
            emit_number(&o, (uint64_t)va_arg(ap, void *), 0, 16, 0, width, prec, left, zero, 1, 0);
            break;
        case 'c': {
            char ch = (char)va_arg(ap, int);

            if (!left)
                pad(&o, ' ', width - 1);
            put(&o, ch);
            if (left)
                pad(&o, ' ', width - 1);
            break;
        }
        case 's': {
            const char *s = va_arg(ap, const char *);
            int n = 0;

            if (s == NULL)
                s = "(null)";
            while (s[n] && (prec < 0 || n < prec))
                n++;
            if (!left)
                pad(&o, ' ', width - n);
            for (int i = 0; i < n; i++)
                put(&o, s[i]);
            if (left)
                pad(&o, ' ', width - n);
            break;
        }
        case '%':
            put(&o, '%');
            break;
        case 0:
            break;
        default:
            put(&o, '%');
            put(&o, c);
            break;
        }
    }
    if (size > 0)
        buf[o.len < size ? o.len : size - 1] = 0;
    return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

int vprintf(const char *fmt, va_list ap)
{
    char buf[1024];
    va_list again;
    int n;

    va_copy(again, ap);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    if ((size_t)n < sizeof(buf)) {
        console_write(buf, (size_t)n);
    } else {
        /* Longer than the buffer: format in pieces is not possible, so print what fits and mark it. */
        console_write(buf, sizeof(buf) - 1);
        console_write("...\n", 4);
    }
    va_end(again);
    return n;
}

int printf(const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

int puts(const char *s)
{
    console_write(s, strlen(s));
    console_write("\n", 1);
    return 0;
}
