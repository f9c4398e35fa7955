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
 *     mmap, munmap, mprotect, madvise, brk, mremap): PTRACE_GETREGS, one JSON line into the
 *     caller's buffer, PTRACE_CONT. With stacks on, only when a walk Python remembered answers
 *     the call's stack (see "Remembered walks" below) and the call changes no module map.
 * It returns for everything else, when the line buffer is nearly full, and after RETURN_NS of
 * handling stops, so that the trace and the live status line stay current while calls come. The JSON lines are the ones tracer/session.py writes for the same
 * calls (tests/test_fastloop.py compares them).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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
    int32_t stacks;      /* 1: stacks on: write only calls a remembered walk answers */
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

/* Remembered walks. tracer/unwind.py remembers a walk whose every frame had its CFA relative to
 * rsp: the next stop at the same (rip, rsp) whose stack holds the same return addresses at the
 * same offsets from rsp has the same stack. Python hands each such walk here with the stack id it
 * interned, so a repeated call site costs one process_vm_readv instead of a return to Python
 * (mmapbench with stacks: about 22 us per call in Python, 10 here). The walks are only valid
 * for the module map they were made in, and a call that changes the map (unmapping part of an
 * object, say) must reach Python: so Python also hands over each process's module intervals
 * (fast_modules), which empties the remembered walks, after every change. */
struct memo {
    uint64_t rip, rsp; /* rip == 0: an empty slot */
    uint64_t sid;
    uint32_t n;    /* return-address words compared */
    uint32_t size; /* bytes read from rsp: the last offset + 8 */
    uint32_t *offsets;
    uint64_t *words;
};

#define MEMO_MAX 65536 /* walks remembered per process; past it, all are forgotten */

struct proc {
    int32_t pid;
    uint32_t n_ivals;
    uint64_t *ivals; /* the module map: n_ivals [start, end) pairs, by address */
    uint32_t memo_cap; /* a power of two (0: no table yet) */
    uint32_t memo_used;
    struct memo *memos; /* open addressing, linear probing */
    struct proc *next;
};

struct fast_table {
    int32_t size;
    struct slot *slots;
    struct proc *procs; /* the processes Python described (fast_modules) */
};

struct fast_table *fast_new(int32_t size) {
    struct fast_table *t = malloc(sizeof *t);
    if (t == NULL)
        return NULL;
    t->size = size;
    t->procs = NULL;
    t->slots = calloc((size_t)size, sizeof *t->slots);
    if (t->slots == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

static void memo_clear(struct proc *p) {
    for (uint32_t i = 0; i < p->memo_cap; i++) {
        free(p->memos[i].offsets);
        free(p->memos[i].words);
    }
    memset(p->memos, 0, (size_t)p->memo_cap * sizeof *p->memos);
    p->memo_used = 0;
}

static void proc_free(struct proc *p) {
    memo_clear(p);
    free(p->memos);
    free(p->ivals);
    free(p);
}

static struct proc *find_proc(struct fast_table *t, int32_t pid) {
    for (struct proc *p = t->procs; p != NULL; p = p->next)
        if (p->pid == pid)
            return p;
    return NULL;
}

void fast_free(struct fast_table *t) {
    if (t != NULL) {
        while (t->procs != NULL) {
            struct proc *p = t->procs;
            t->procs = p->next;
            proc_free(p);
        }
        free(t->slots);
        free(t);
    }
}

/* Process pid's module map is now these n [start, end) pairs (sorted): forget its remembered
 * walks, which belong to the old map. Returns 0, or -1 when out of memory. */
int fast_modules(struct fast_table *t, int32_t pid, uint32_t n, const uint64_t *ivals) {
    struct proc *p = find_proc(t, pid);
    if (p == NULL) {
        p = calloc(1, sizeof *p);
        if (p == NULL)
            return -1;
        p->pid = pid;
        p->next = t->procs;
        t->procs = p;
    }
    memo_clear(p);
    uint64_t *copy = malloc((size_t)(n ? n : 1) * 2 * sizeof *copy);
    if (copy == NULL) {
        p->n_ivals = 0; /* keep no stale map: with no walks left, nothing here reads it */
        return -1;
    }
    memcpy(copy, ivals, (size_t)n * 2 * sizeof *copy);
    free(p->ivals);
    p->ivals = copy;
    p->n_ivals = n;
    return 0;
}

/* Process pid is gone, or its address space was replaced: forget all about it. */
void fast_forget(struct fast_table *t, int32_t pid) {
    for (struct proc **pp = &t->procs; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->pid == pid) {
            struct proc *p = *pp;
            *pp = p->next;
            proc_free(p);
            return;
        }
    }
}

static uint32_t memo_hash(uint64_t rip, uint64_t rsp) {
    uint64_t h = (rip ^ (rsp * 0x9E3779B97F4A7C15ULL)) * 0xBF58476D1CE4E5B9ULL;
    return (uint32_t)(h >> 32);
}

static struct memo *memo_slot(struct proc *p, uint64_t rip, uint64_t rsp) {
    uint32_t mask = p->memo_cap - 1;
    for (uint32_t i = memo_hash(rip, rsp) & mask;; i = (i + 1) & mask) {
        struct memo *m = &p->memos[i];
        if (m->rip == 0 || (m->rip == rip && m->rsp == rsp))
            return m;
    }
}

static int memo_grow(struct proc *p) {
    uint32_t old_cap = p->memo_cap;
    struct memo *old = p->memos;
    uint32_t cap = old_cap ? old_cap * 2 : 64;
    struct memo *memos = calloc(cap, sizeof *memos);
    if (memos == NULL)
        return -1;
    p->memos = memos;
    p->memo_cap = cap;
    for (uint32_t i = 0; i < old_cap; i++)
        if (old[i].rip != 0)
            *memo_slot(p, old[i].rip, old[i].rsp) = old[i];
    free(old);
    return 0;
}

/* Remember a walk of process pid (made in the map last given to fast_modules): at (rip, rsp),
 * when the n words at these offsets from rsp (increasing) are these, the stack is sid.
 * Returns 0, or -1 when it was not kept (an unknown process, out of memory). */
int fast_remember(struct fast_table *t, int32_t pid, uint64_t rip, uint64_t rsp, uint64_t sid,
                  uint32_t n, const uint32_t *offsets, const uint64_t *words) {
    struct proc *p = find_proc(t, pid);
    if (p == NULL || rip == 0 || n == 0)
        return -1;
    if (p->memo_used >= MEMO_MAX)
        memo_clear(p);
    if ((p->memo_used + 1) * 2 > p->memo_cap && memo_grow(p) != 0)
        return -1;
    uint32_t *o = malloc((size_t)n * sizeof *o);
    uint64_t *w = malloc((size_t)n * sizeof *w);
    if (o == NULL || w == NULL) {
        free(o);
        free(w);
        return -1;
    }
    memcpy(o, offsets, (size_t)n * sizeof *o);
    memcpy(w, words, (size_t)n * sizeof *w);
    struct memo *m = memo_slot(p, rip, rsp);
    if (m->rip == 0)
        p->memo_used++;
    free(m->offsets);
    free(m->words);
    *m = (struct memo){rip, rsp, sid, n, offsets[n - 1] + 8, o, w};
    return 0;
}

/* The remembered stack of this stop, or -1 when Python must walk it. */
static int64_t remembered_stack(struct proc *p, const struct user_regs_struct *r) {
    if (p->memo_cap == 0 || r->rip == 0)
        return -1;
    struct memo *m = memo_slot(p, r->rip, r->rsp);
    if (m->rip == 0)
        return -1;
    /* Return addresses are at most 64 KiB above rsp (tracer/unwind.py's _MAX_READ). */
    uint64_t buf[8192];
    if (m->size > sizeof buf)
        return -1;
    struct iovec local = {buf, m->size};
    struct iovec remote = {(void *)(uintptr_t)r->rsp, m->size};
    if (process_vm_readv(p->pid, &local, 1, &remote, 1, 0) != (ssize_t)m->size)
        return -1;
    for (uint32_t i = 0; i < m->n; i++) {
        uint64_t word;
        memcpy(&word, (const char *)buf + m->offsets[i], sizeof word);
        if (word != m->words[i])
            return -1;
    }
    return (int64_t)m->sid;
}

/* Does [addr, addr + len) (rounded up to pages, as tracer/modules.py rounds) meet a module? */
static int meets_module(const struct proc *p, uint64_t addr, uint64_t len) {
    uint64_t end = (addr + len + 4095) & ~(uint64_t)4095;
    uint32_t lo = 0, hi = p->n_ivals; /* the first interval ending after addr */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (p->ivals[2 * mid + 1] <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < p->n_ivals && p->ivals[2 * lo] < end;
}

/* Would Python's bookkeeping (session._update_modules) change the module map for this call? */
static int changes_modules(const struct proc *p, const struct user_regs_struct *r) {
    uint64_t raw = r->rax;
    if (raw >= (uint64_t)-4095) /* failed (brk never changes the map) */
        return 0;
    switch (r->orig_rax) {
    case 9: return meets_module(p, raw, r->rsi); /* an anonymous mmap replaces what was there */
    case 11: return meets_module(p, r->rdi, r->rsi);
    case 25: return meets_module(p, r->rdi, r->rsi) || meets_module(p, raw, r->rdx);
    default: return 0;
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

/* Writes the record of a finished call (with its stack id unless sid < 0), or returns NULL when
 * Python must write it: a file-backed mmap (its path is read from /proc), prctl, ptrace, or
 * anything unexpected. */
static char *format_line(char *p, const struct user_regs_struct *r, uint64_t seq, int64_t entry,
                         int64_t end, int32_t pid, int32_t tid, int64_t sid) {
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
    if (sid >= 0)
        p = member(p, ",\"stack\":", (uint64_t)sid);
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
        int64_t sid = -1;
        if (c->stacks) {
            struct proc *p = find_proc(t, s->pid);
            if (p == NULL || changes_modules(p, c->regs) || (sid = remembered_stack(p, c->regs)) < 0)
                return FAST_EXIT_STOP;
        }
        char *line = c->buf + c->used;
        char *after = format_line(line, c->regs, c->seq + 1, s->entry_ns, end, s->pid, tid, sid);
        if (after == NULL)
            return FAST_EXIT_STOP;
        c->seq++;
        c->used += (uint64_t)(after - line);
        ptrace(PTRACE_CONT, tid, 0, 0);
    }
}

/*
 * The child's side of tracer/session.py's spawn under the seccomp filter, from the moment it
 * may be traced: wait for the tracer's go, install the filter, exec. Once the filter is in,
 * every memory syscall stops the child until the tracer resumes it, and the tracer is blocked
 * reading `err_fd` until the exec closes it. Python there allocates (os.execve builds its
 * arrays; a large environment takes an mmap), so both waited for ever. Nothing here allocates:
 * `argv` and `envp` were built before fork. Never returns.
 */
#define PR_SET_NO_NEW_PRIVS_ 38
#define PR_SET_SECCOMP_ 22
#define SECCOMP_MODE_FILTER_ 2

static void report(int fd, char kind, int err) {
    char text[16]; /* formatted on the stack: glibc's %d allocates nothing */
    int n = snprintf(text, sizeof text, "%c%d\n", kind, err);
    ssize_t ignored = write(fd, text, (size_t)n);
    (void)ignored; /* the parent then sees no report: the exec's EOF or the child's death */
}

/* 0, or the errno of the failure. no_new_privs only when the kernel demands it (not root): it
 * would stop a setuid program from gaining privilege even where ptrace allows it (as strace). */
static int install_filter(const void *fprog) {
    if (prctl(PR_SET_SECCOMP_, SECCOMP_MODE_FILTER_, fprog, 0, 0) == 0)
        return 0;
    if (errno != EACCES)
        return errno;
    if (prctl(PR_SET_NO_NEW_PRIVS_, 1, 0, 0, 0) != 0)
        return errno;
    return prctl(PR_SET_SECCOMP_, SECCOMP_MODE_FILTER_, fprog, 0, 0) == 0 ? 0 : errno;
}

void fast_exec(int go_fd, int err_fd, const void *fprog, const char *path, char *const argv[],
               char *const envp[]) {
    char go = 0;
    while (read(go_fd, &go, 1) < 0 && errno == EINTR)
        ;
    if (go != 'g') /* not seized: never run untraced */
        _exit(127);
    int failed = install_filter(fprog);
    if (failed)
        report(err_fd, 'S', failed); /* the kernel refused it: plain syscall stops */
    execve(path, argv, envp);
    report(err_fd, 'E', errno);
    _exit(127);
}
