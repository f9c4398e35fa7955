/*
 * The tracer's hot loop in C: waitpid, the two stops of a traced memory syscall, one trace line.
 *
 * tracer/session.py runs everything else in Python. This file exists because the Python loop
 * costs about 5 us per stop on top of the kernel's ptrace stops, which made recording 1.6x
 * strace --seccomp-bpf on a syscall-dense program; here a traced call costs what the two stops
 * cost. It is a plain shared library loaded with ctypes (tracer/fastloop.py), not a CPython
 * extension: no Python API, nothing to get wrong about the GIL or reference counts.
 *
 * fast_run() waits for stops and handles, without returning:
 *   - the seccomp stop at a memory syscall's entry: take the time, PTRACE_SYSCALL;
 *   - the syscall-exit stop that follows, when the call needs nothing from Python (an anonymous
 *     mmap, munmap, mprotect, madvise, brk, mremap) and stacks are off: PTRACE_GETREGS, one JSON
 *     line into the caller's buffer, PTRACE_CONT.
 * It returns for everything else, when the line buffer is nearly full, and after RETURN_NS of
 * handling stops, so that the trace and the live status line stay current while calls come. The JSON lines are the ones tracer/session.py writes for the same
 * calls (tests/test_fastloop.py compares them).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>

#ifndef __WALL
#define __WALL 0x40000000
#endif
#define PTRACE_EVENT_SECCOMP_ 7
#define SECCOMP_STOP ((SIGTRAP | (PTRACE_EVENT_SECCOMP_ << 8)))
#define SYSCALL_STOP (SIGTRAP | 0x80) /* PTRACE_O_TRACESYSGOOD */
#define RETURN_NS 50000000LL          /* hand back to Python after 50 ms of stops */
#define LINE_MAX_BYTES 512            /* longest line written here (mremap: ~330 bytes) */

/* What fast_run returns. */
enum { FAST_STOP = 0, FAST_EXIT_STOP = 1, FAST_FLUSH = 2, FAST_NO_CHILD = 3, FAST_EINTR = 4 };

/* Shared with Python (tracer/fastloop.py declares the same layout). */
struct fast_ctx {
    int64_t t0;          /* CLOCK_MONOTONIC ns at the session's start (time.monotonic_ns) */
    int32_t stacks;      /* 1: every memory syscall's exit stop goes to Python (to unwind) */
    int32_t tid;         /* out: the thread of the stop handed back */
    int32_t status;      /* out: its wait status (FAST_STOP) */
    int64_t entry_ns;    /* out: entry time of the call whose exit stop is handed back */
    uint64_t seq;        /* in/out: the last sequence number written */
    char *buf;           /* lines written here, each ending in '\n' */
    uint64_t cap;
    uint64_t used;       /* in/out */
    struct user_regs_struct *regs; /* out: filled at FAST_EXIT_STOP */
};

/* Per thread: the process it belongs to and the entry time of its current call. Indexed by
 * tid (16 bytes each), grown to cover the largest tid added. */
struct slot {
    int32_t pid; /* 0: not traced by this session */
    int64_t entry_ns;
};

struct fast_table {
    int32_t size;
    struct slot *slots;
};

struct fast_table *fast_new(int32_t size) {
    struct fast_table *t = malloc(sizeof *t);
    if (t == NULL)
        return NULL;
    t->size = size;
    t->slots = calloc((size_t)size, sizeof *t->slots);
    if (t->slots == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

void fast_free(struct fast_table *t) {
    if (t != NULL) {
        free(t->slots);
        free(t);
    }
}

/* Returns 0, or -1 when the table cannot grow (out of memory). */
int fast_add(struct fast_table *t, int32_t tid, int32_t pid) {
    if (tid <= 0)
        return 0;
    if (tid >= t->size) {
        int32_t size = tid < INT32_MAX / 2 ? tid * 2 : INT32_MAX;
        struct slot *slots = realloc(t->slots, (size_t)size * sizeof *slots);
        if (slots == NULL)
            return -1;
        memset(slots + t->size, 0, (size_t)(size - t->size) * sizeof *slots);
        t->slots = slots;
        t->size = size;
    }
    t->slots[tid].pid = pid;
    return 0;
}

void fast_drop(struct fast_table *t, int32_t tid) {
    if (tid > 0 && tid < t->size)
        t->slots[tid].pid = 0;
}

/* alloctrace's own SIGINT, SIGTERM and SIGHUP. Python's handler only notes the signal: its
 * Python part runs once fast_run returns. A signal that comes while the loop is handling a stop
 * (not inside waitpid, which EINTR would end) would wait for the program's next stop, forever if
 * the program then sleeps: so the loop chains a handler of its own that raises a flag it checks
 * before each waitpid. */
static const int watched[] = {SIGINT, SIGTERM, SIGHUP};
#define WATCHED (sizeof watched / sizeof watched[0])
static struct sigaction chained[WATCHED];
static int installed[WATCHED];
static volatile sig_atomic_t interrupted;

static void on_signal(int sig, siginfo_t *info, void *context) {
    interrupted = 1;
    for (size_t i = 0; i < WATCHED; i++) {
        if (watched[i] != sig || !installed[i])
            continue;
        if (chained[i].sa_flags & SA_SIGINFO)
            chained[i].sa_sigaction(sig, info, context);
        else
            chained[i].sa_handler(sig);
    }
}

/* Chain on_signal in front of the handlers Python installed (not over a default or ignore). */
void fast_watch_signals(void) {
    for (size_t i = 0; i < WATCHED; i++) {
        struct sigaction old;
        if (installed[i] || sigaction(watched[i], NULL, &old) != 0)
            continue;
        int is_function = (old.sa_flags & SA_SIGINFO) ||
                          (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN);
        if (!is_function || old.sa_sigaction == on_signal)
            continue;
        struct sigaction mine = old;
        mine.sa_sigaction = on_signal;
        mine.sa_flags = (old.sa_flags | SA_SIGINFO) & ~SA_RESTART; /* waitpid must see EINTR */
        chained[i] = old;
        installed[i] = sigaction(watched[i], &mine, NULL) == 0;
    }
    interrupted = 0;
}

/* Put Python's handlers back. */
void fast_unwatch_signals(void) {
    for (size_t i = 0; i < WATCHED; i++) {
        if (installed[i])
            sigaction(watched[i], &chained[i], NULL);
        installed[i] = 0;
    }
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static char *put_str(char *p, const char *s) {
    while (*s)
        *p++ = *s++;
    return p;
}

static char *put_u64(char *p, uint64_t v) {
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put_i64(char *p, int64_t v) {
    if (v < 0) {
        *p++ = '-';
        return put_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(p, (uint64_t)v);
}

static char *member(char *p, const char *key, uint64_t v) {
    p = put_str(p, key);
    return put_u64(p, v);
}

#define MAP_ANONYMOUS_ 0x20
#define MREMAP_FIXED_ 2

/* Writes the record of a finished call, or returns NULL when Python must write it: a
 * file-backed mmap (its path is read from /proc), prctl, ptrace, or anything unexpected. */
static char *format_line(char *p, const struct user_regs_struct *r, uint64_t seq, int64_t entry,
                         int64_t end, int32_t pid, int32_t tid) {
    const char *name;
    uint64_t nr = r->orig_rax;
    uint32_t flags = (uint32_t)r->r10;
    int32_t fd = (int32_t)(uint32_t)r->r8;
    switch (nr) {
    case 9:
        if (!(flags & MAP_ANONYMOUS_) && fd >= 0)
            return NULL;
        name = "mmap";
        break;
    case 10: name = "mprotect"; break;
    case 11: name = "munmap"; break;
    case 12: name = "brk"; break;
    case 25: name = "mremap"; break;
    case 28: name = "madvise"; break;
    default: return NULL;
    }
    p = member(p, "{\"kind\":\"syscall\",\"seq\":", seq);
    p = put_str(p, ",\"ts_ns\":");
    p = put_i64(p, entry);
    p = put_str(p, ",\"dur_ns\":");
    p = put_i64(p, end - entry);
    p = member(p, ",\"pid\":", (uint64_t)pid);
    p = member(p, ",\"tid\":", (uint64_t)tid);
    p = put_str(p, ",\"syscall\":\"");
    p = put_str(p, name);
    *p++ = '"';
    if (nr == 12) {
        p = member(p, ",\"addr\":", r->rdi);
    } else {
        p = member(p, ",\"addr\":", r->rdi);
        p = member(p, ",\"length\":", r->rsi);
        if (nr == 9) {
            p = member(p, ",\"prot\":", (uint32_t)r->rdx);
            p = member(p, ",\"flags\":", flags);
            p = put_str(p, ",\"fd\":");
            p = put_i64(p, fd);
            p = member(p, ",\"offset\":", r->r9);
        } else if (nr == 10) {
            p = member(p, ",\"prot\":", (uint32_t)r->rdx);
        } else if (nr == 28) {
            p = member(p, ",\"advice\":", (uint32_t)r->rdx);
        } else if (nr == 25) {
            p = member(p, ",\"new_length\":", r->rdx);
            p = member(p, ",\"flags\":", flags);
            if (flags & MREMAP_FIXED_)
                p = member(p, ",\"new_addr\":", r->r8);
        }
    }
    uint64_t raw = r->rax;
    /* -4095..-1 is -errno, except for brk, which returns the old break instead of failing */
    if (raw >= (uint64_t)-4095 && nr != 12)
        p = member(p, ",\"errno\":", (uint64_t)0 - raw);
    else
        p = member(p, ",\"result\":", raw);
    *p++ = '}';
    *p++ = '\n';
    return p;
}

int fast_run(struct fast_table *t, struct fast_ctx *c) {
    int64_t started = now_ns();
    int status;
    for (;;) {
        if (interrupted) {
            interrupted = 0;
            return FAST_EINTR;
        }
        if (c->cap - c->used < LINE_MAX_BYTES || now_ns() - started > RETURN_NS)
            return FAST_FLUSH;
        pid_t tid = waitpid(-1, &status, __WALL);
        if (tid < 0)
            return errno == EINTR ? FAST_EINTR : FAST_NO_CHILD;
        c->tid = tid;
        c->status = status;
        if (!WIFSTOPPED(status) || tid >= t->size || t->slots[tid].pid == 0)
            return FAST_STOP;
        struct slot *s = &t->slots[tid];
        int stop = status >> 8;
        if (stop == SECCOMP_STOP) {
            s->entry_ns = now_ns() - c->t0;
            ptrace(PTRACE_SYSCALL, tid, 0, 0); /* ESRCH: its death is the next wait status */
            continue;
        }
        if (stop != SYSCALL_STOP)
            return FAST_STOP;
        int64_t end = now_ns() - c->t0;
        if (ptrace(PTRACE_GETREGS, tid, 0, c->regs) < 0)
            continue; /* killed during the call (a group exit): nothing to record */
        c->entry_ns = s->entry_ns;
        if (c->stacks)
            return FAST_EXIT_STOP;
        char *line = c->buf + c->used;
        char *after = format_line(line, c->regs, c->seq + 1, s->entry_ns, end, s->pid, tid);
        if (after == NULL)
            return FAST_EXIT_STOP;
        c->seq++;
        c->used += (uint64_t)(after - line);
        ptrace(PTRACE_CONT, tid, 0, 0);
    }
}
