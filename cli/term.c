/* term.c — the local terminal and the signals that concern it.
 *
 * A tty session puts the terminal in raw mode (every key, ^C included, goes
 * to the sandbox).  It must come back whatever ends sbx: the session's end,
 * exit(), SIGINT/TERM/HUP/QUIT, a crash, and ^Z / SIGTSTP (restored while
 * stopped, raw again on SIGCONT).  Signals otherwise only write their number
 * to a self-pipe, which the session's poll loop reads: nothing else happens
 * in a handler. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>

static int sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t restore_on_exit_signals;
static bool ignored_at_start[NSIG];

static struct termios saved_termios, raw_termios;
static volatile sig_atomic_t raw_fd = -1; /* the terminal we changed, -1 when none */
static volatile sig_atomic_t raw_on;      /* it is in raw mode now */
static struct sigaction old_fatal[NSIG];
static bool fatal_installed;

static const int exit_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

/* Async-signal-safe: tcsetattr is. */
static void restore_now(void)
{
    if (raw_fd >= 0 && raw_on) {
        tcsetattr(raw_fd, TCSANOW, &saved_termios);
        raw_on = 0;
    }
}

void cli_term_restore(void)
{
    restore_now();
}

static void on_signal(int sig)
{
    int saved_errno = errno;
    unsigned char b = (unsigned char)sig;

    if (restore_on_exit_signals && sig != SIGWINCH && sig != SIGCONT)
        restore_now();
    if (write(sig_pipe[1], &b, 1) < 0) {
        /* The pipe is full: signals are already waiting to be read. */
    }
    errno = saved_errno;
}

/* ^Z: the terminal goes back to normal while sbx is stopped, and raw again
 * when it continues (the window may have changed meanwhile). */
static void on_tstp(int sig)
{
    int saved_errno = errno;
    bool was_raw = raw_on;
    struct sigaction dfl = {.sa_handler = SIG_DFL}, self = {.sa_handler = on_tstp};
    sigset_t set;

    restore_now();
    sigaction(SIGTSTP, &dfl, NULL);
    sigemptyset(&set);
    sigaddset(&set, SIGTSTP);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    /* Continued. */
    sigemptyset(&self.sa_mask);
    self.sa_flags = SA_RESTART;
    sigaction(SIGTSTP, &self, NULL);
    if (was_raw && raw_fd >= 0 && tcsetattr(raw_fd, TCSANOW, &raw_termios) == 0)
        raw_on = 1;
    on_signal(SIGWINCH);
    errno = saved_errno;
}

/* A crash: the terminal first, then whatever handled the signal before
 * (the default, or a sanitizer's report).  A fault re-runs the faulting
 * instruction on return; a sent signal is raised again. */
static void on_fatal(int sig, siginfo_t *info, void *ctx)
{
    (void)ctx;
    restore_now();
    sigaction(sig, &old_fatal[sig], NULL);
    if (info->si_code <= 0)
        raise(sig);
}

int cli_signals_init(bool restore_on_exit, struct cli_error *err)
{
    struct sigaction sa = {.sa_handler = on_signal}, ign = {.sa_handler = SIG_IGN};
    struct sigaction tstp = {.sa_handler = on_tstp}, fatal = {.sa_sigaction = on_fatal};

    restore_on_exit_signals = restore_on_exit;
    if (sig_pipe[0] < 0 && pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return cli_error_errno(err, errno, "pipe");
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < sizeof(exit_signals) / sizeof(exit_signals[0]); i++) {
        struct sigaction old;
        /* What was ignored when sbx started (nohup, a background job of a
         * non-interactive shell) stays ignored. */
        if (sigaction(exit_signals[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN &&
            exit_signals[i] != SIGTERM) {
            ignored_at_start[exit_signals[i]] = true;
            continue;
        }
        sigaction(exit_signals[i], &sa, NULL);
    }
    sigaction(SIGWINCH, &sa, NULL);
    sigaction(SIGCONT, &sa, NULL);
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, NULL);
    sigemptyset(&tstp.sa_mask);
    tstp.sa_flags = SA_RESTART;
    sigaction(SIGTSTP, &tstp, NULL);
    /* Once: a second call must not take our own handler for the old one. */
    if (!fatal_installed) {
        sigemptyset(&fatal.sa_mask);
        fatal.sa_flags = SA_SIGINFO;
        for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++)
            sigaction(fatal_signals[i], &fatal, &old_fatal[fatal_signals[i]]);
        fatal_installed = true;
    }
    return 0;
}

void cli_signals_reset(void)
{
    struct sigaction dfl = {.sa_handler = SIG_DFL};

    sigemptyset(&dfl.sa_mask);
    for (size_t i = 0; i < sizeof(exit_signals) / sizeof(exit_signals[0]); i++)
        if (!ignored_at_start[exit_signals[i]])
            sigaction(exit_signals[i], &dfl, NULL);
    sigaction(SIGWINCH, &dfl, NULL);
    sigaction(SIGCONT, &dfl, NULL);
    sigaction(SIGTSTP, &dfl, NULL);
    /* Whatever came meanwhile is of no interest any more. */
    while (cli_signals_next())
        ;
}

int cli_signals_fd(void)
{
    return sig_pipe[0];
}

int cli_signals_next(void)
{
    unsigned char b;
    ssize_t n;

    if (sig_pipe[0] < 0)
        return 0;
    do
        n = read(sig_pipe[0], &b, 1);
    while (n < 0 && errno == EINTR);
    return n == 1 ? b : 0;
}

int cli_term_raw(int fd, struct cli_error *err)
{
    struct termios t;

    if (tcgetattr(fd, &t) < 0)
        return cli_error_errno(err, errno, "terminal");
    saved_termios = t;
    cfmakeraw(&t);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    raw_termios = t;
    if (raw_fd < 0)
        atexit(cli_term_restore);
    raw_fd = fd;
    if (tcsetattr(fd, TCSANOW, &t) < 0)
        return cli_error_errno(err, errno, "terminal: raw mode");
    raw_on = 1;
    return 0;
}

bool cli_term_size(unsigned *rows, unsigned *cols)
{
    static const int fds[] = {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO};
    struct winsize ws;

    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
        if (ioctl(fds[i], TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
            *rows = ws.ws_row;
            *cols = ws.ws_col;
            return true;
        }
    }
    return false;
}
