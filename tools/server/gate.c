/*
 * gate.c - accept, per-IP cap, head checks and deadlines (see gate.h).
 *
 * One thread, one epoll set. A connection still sending its head is
 * watched edge-triggered and its bytes are only peeked (MSG_PEEK), so each
 * new segment wakes the gate once and libmicrohttpd later reads the head
 * itself. A refused connection gets its JSON answer, has its write side
 * shut, and is drained for at most LINGER_SECONDS before it is closed.
 */
#include "gate.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "response.h"

#define LINGER_SECONDS 2.0
#define LINGER_BYTES (1L << 20)

typedef struct ip_key {
    unsigned char b[16];
} ip_key;

/* A connection the gate holds: reading its head, or lingering after a refusal.
 */
typedef struct pconn {
    struct pconn *next;
    int fd;
    int lingering;
    double t0; /* accepted, or refused (lingering) */
    long drained;
    ip_key ip;
    struct sockaddr_storage addr;
    socklen_t alen;
} pconn;

/* A connection libmicrohttpd holds (its socket_context). */
typedef struct mconn {
    struct mconn *prev, *next;
    int fd;
    int shut;
    ip_key ip;
    double deadline; /* 0: none */
} mconn;

typedef struct ip_count {
    ip_key ip;
    long n;
} ip_count;

struct srv_gate {
    srv_gate_opts o;
    int ep;
    pthread_t thread;
    atomic_int stop, quiesce;
    int stopped;
    pconn *held;
    long n_pending;
    char *peek; /* o.head.max_head + 1 bytes */

    pthread_mutex_t mu; /* guards conns and ips */
    mconn *conns;
    ip_count *ips;
    size_t n_ips, cap_ips;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static ip_key key_of(const struct sockaddr *sa)
{
    ip_key k;
    memset(&k, 0, sizeof k);
    if (sa->sa_family == AF_INET) {
        /* As an IPv4-mapped IPv6 address, so both families share a key. */
        k.b[10] = k.b[11] = 0xff;
        memcpy(k.b + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(k.b, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
    return k;
}

/* Adds delta to the count of ip. Returns 1 when the count is then over the
 * cap, -1 when out of memory. Call with mu held. */
static int ip_add(srv_gate *g, const ip_key *ip, long delta)
{
    size_t i = 0;
    while (i < g->n_ips && memcmp(&g->ips[i].ip, ip, sizeof *ip) != 0)
        i++;
    if (i == g->n_ips) {
        if (delta <= 0)
            return 0;
        if (g->n_ips == g->cap_ips) {
            size_t cap = g->cap_ips ? g->cap_ips * 2 : 64;
            ip_count *p = realloc(g->ips, cap * sizeof *p);
            if (!p)
                return -1;
            g->ips = p;
            g->cap_ips = cap;
        }
        g->ips[i].ip = *ip;
        g->ips[i].n = 0;
        g->n_ips++;
    }
    g->ips[i].n += delta;
    int over = g->ips[i].n > g->o.max_per_ip;
    if (g->ips[i].n <= 0)
        g->ips[i] = g->ips[--g->n_ips];
    return over;
}

static void ip_release(srv_gate *g, const ip_key *ip)
{
    pthread_mutex_lock(&g->mu);
    ip_add(g, ip, -1);
    pthread_mutex_unlock(&g->mu);
}

static const char *reason(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

/* Sends err as a whole JSON response, shuts the write side and starts the
 * linger. `line` is the request line seen so far, for the log. */
static void refuse(srv_gate *g, pconn *pc, const srv_error *err, int openai, const char *line)
{
    srv_buf body = {0}, msg = {0};
    if (openai)
        srv_error_json_openai(&body, err);
    else
        srv_error_json_tei(&body, err);
    srv_buf_printf(&msg,
                   "HTTP/1.1 %d %s\r\nContent-Type: "
                   "application/json\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n%s\r\n",
                   err->status, reason(err->status), body.len,
                   err->status == 429 ? "Retry-After: 1\r\n" : "");
    srv_buf_put(&msg, body.p ? body.p : "", body.len);
    if (!msg.oom) {
        size_t off = 0;
        while (off < msg.len) {
            ssize_t w = send(pc->fd, msg.p + off, msg.len - off, MSG_NOSIGNAL);
            if (w <= 0)
                break; /* a full send buffer on a fresh socket: the client is gone */
            off += (size_t)w;
        }
    }
    srv_buf_free(&body);
    srv_buf_free(&msg);
    shutdown(pc->fd, SHUT_WR);
    srv_metrics_failure(g->o.metrics, srv_fail_kind_of(err));
    g->o.log("%s -> %d %s", line[0] ? line : "(no request line)", err->status, err->code);
    pc->lingering = 1;
    pc->t0 = now_s();
}

static void drop(srv_gate *g, pconn **link)
{
    pconn *pc = *link;
    *link = pc->next;
    if (!pc->lingering)
        g->n_pending--;
    close(pc->fd); /* also leaves the epoll set */
    ip_release(g, &pc->ip);
    free(pc);
}

static void accept_all(srv_gate *g)
{
    for (;;) {
        struct sockaddr_storage addr;
        socklen_t alen = sizeof addr;
        int fd =
            accept4(g->o.listen_fd, (struct sockaddr *)&addr, &alen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or a transient error: epoll says when to retry */
        pconn *pc = calloc(1, sizeof *pc);
        if (!pc || g->n_pending >= g->o.max_pending) {
            free(pc);
            close(fd);
            continue;
        }
        pc->fd = fd;
        pc->t0 = now_s();
        pc->ip = key_of((struct sockaddr *)&addr);
        pc->addr = addr;
        pc->alen = alen;
        /* A refused connection counts too, until it is closed. */
        pthread_mutex_lock(&g->mu);
        int over = ip_add(g, &pc->ip, 1);
        pthread_mutex_unlock(&g->mu);
        if (over < 0) {
            close(fd);
            free(pc);
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = pc};
        if (epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            ip_release(g, &pc->ip);
            free(pc);
            continue;
        }
        pc->next = g->held;
        g->held = pc;
        g->n_pending++;
        if (over) {
            srv_error e;
            srv_fail(&e, 429, "Overloaded", NULL, "too_many_connections",
                     "too many connections from this address (at most %ld: "
                     "--max-connections-per-ip)",
                     g->o.max_per_ip);
            g->n_pending--;
            refuse(g, pc, &e, 0, "");
        }
    }
}

/* A pending connection has news (or its deadline passed). Returns 1 when it
 * left the gate (handed over or dropped). */
static int serve_pending(srv_gate *g, pconn **link, double now)
{
    pconn *pc = *link;
    ssize_t r = recv(pc->fd, g->peek, g->o.head.max_head + 1, MSG_PEEK);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        drop(g, link);
        return 1;
    }
    size_t n = r > 0 ? (size_t)r : 0;
    srv_head h;
    srv_error e;
    int rc = srv_head_check(g->peek, n, &g->o.head, &h, &e);
    if (rc == 0 && h.content_length > g->o.max_announced) {
        /* Larger than libmicrohttpd would parse, and than is worth draining. */
        srv_fail(&e, 413, "Validation", NULL, "payload_too_large",
                 "the request body is %lld bytes, over the payload limit of %ld bytes",
                 (long long)h.content_length, g->o.payload_limit);
        rc = -1;
    }
    if (rc == 1 && now - pc->t0 > g->o.header_timeout) {
        srv_fail(&e, 408, "Validation", NULL, "request_timeout",
                 "the request head was not complete within %g s (--header-timeout)",
                 g->o.header_timeout);
        rc = -1;
    }
    if (rc < 0) {
        char line[400];
        size_t ll = 0;
        while (ll < n && ll < 96 && g->peek[ll] != '\r' && g->peek[ll] != '\n')
            ll++;
        srv_log_escape(g->peek, ll, line, sizeof line);
        /* Consume what came, so that closing does not reset the answer away. */
        while (recv(pc->fd, g->peek, g->o.head.max_head + 1, 0) > 0)
            ;
        g->n_pending--;
        refuse(g, pc, &e, h.openai, line);
        return 0;
    }
    if (rc == 1)
        return 0;
    /* A valid head: libmicrohttpd takes the connection (and closes it if it
     * cannot). */
    *link = pc->next;
    g->n_pending--;
    epoll_ctl(g->ep, EPOLL_CTL_DEL, pc->fd, NULL);
    if (MHD_add_connection(g->o.daemon, pc->fd, (struct sockaddr *)&pc->addr, pc->alen) != MHD_YES)
        ip_release(g, &pc->ip);
    free(pc);
    return 1;
}

static void linger(srv_gate *g, pconn **link, double now)
{
    pconn *pc = *link;
    for (;;) {
        ssize_t r = recv(pc->fd, g->peek, g->o.head.max_head + 1, 0);
        if (r > 0) {
            pc->drained += r;
            if (pc->drained > LINGER_BYTES)
                break;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) &&
            now - pc->t0 < LINGER_SECONDS)
            return; /* keep waiting for the client's close */
        break;
    }
    drop(g, link);
}

static void watchdog(srv_gate *g, double now)
{
    pthread_mutex_lock(&g->mu);
    for (mconn *m = g->conns; m; m = m->next) {
        if (!m->shut && m->deadline > 0 && now > m->deadline) {
            /* libmicrohttpd's thread sees the end of the stream and closes. */
            shutdown(m->fd, SHUT_RDWR);
            m->shut = 1;
            srv_error e;
            srv_fail(&e, 408, "Validation", NULL, "request_timeout", "deadline passed");
            srv_metrics_failure(g->o.metrics, srv_fail_kind_of(&e));
        }
    }
    pthread_mutex_unlock(&g->mu);
}

static void *gate_main(void *arg)
{
    srv_gate *g = arg;
    struct epoll_event evs[64];
    while (!atomic_load(&g->stop)) {
        if (atomic_load(&g->quiesce) && g->o.listen_fd >= 0) {
            close(g->o.listen_fd);
            g->o.listen_fd = -1;
        }
        int n = epoll_wait(g->ep, evs, 64, 50);
        for (int i = 0; i < n; i++)
            if (evs[i].data.ptr == NULL && g->o.listen_fd >= 0)
                accept_all(g);
        /* Every held connection is visited each round: the few that had
         * events make progress, and deadlines are checked for all. */
        double now = now_s();
        for (pconn **link = &g->held; *link;) {
            pconn *pc = *link;
            int had_event = 0;
            for (int i = 0; i < n && !had_event; i++)
                had_event = evs[i].data.ptr == pc;
            if (pc->lingering) {
                linger(g, link, now);
            } else if (had_event || now - pc->t0 > g->o.header_timeout) {
                if (serve_pending(g, link, now))
                    continue;
            }
            if (*link == pc)
                link = &pc->next;
        }
        watchdog(g, now);
    }
    return NULL;
}

int srv_gate_start(const srv_gate_opts *o, srv_gate **out)
{
    srv_gate *g = calloc(1, sizeof *g);
    if (!g)
        return -1;
    g->o = *o;
    g->peek = malloc(o->head.max_head + 1);
    g->ep = epoll_create1(EPOLL_CLOEXEC);
    pthread_mutex_init(&g->mu, NULL);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (!g->peek || g->ep < 0 || epoll_ctl(g->ep, EPOLL_CTL_ADD, o->listen_fd, &ev) != 0 ||
        pthread_create(&g->thread, NULL, gate_main, g) != 0) {
        int saved = errno;
        if (g->ep >= 0)
            close(g->ep);
        free(g->peek);
        pthread_mutex_destroy(&g->mu);
        free(g);
        errno = saved;
        return -1;
    }
    *out = g;
    return 0;
}

void srv_gate_quiesce(srv_gate *g)
{
    if (g)
        atomic_store(&g->quiesce, 1);
}

void srv_gate_stop(srv_gate *g)
{
    if (!g || g->stopped)
        return;
    atomic_store(&g->stop, 1);
    pthread_join(g->thread, NULL);
    g->stopped = 1;
    while (g->held)
        drop(g, &g->held);
    if (g->o.listen_fd >= 0)
        close(g->o.listen_fd);
    g->o.listen_fd = -1;
}

void srv_gate_free(srv_gate *g)
{
    if (!g)
        return;
    srv_gate_stop(g);
    close(g->ep);
    free(g->peek);
    free(g->ips);
    /* mconn records are freed by libmicrohttpd's CLOSED notifications. */
    pthread_mutex_destroy(&g->mu);
    free(g);
}

void srv_gate_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                     enum MHD_ConnectionNotificationCode toe)
{
    srv_gate *g = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        mconn *m = calloc(1, sizeof *m);
        if (!m)
            return;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        m->fd = ci ? (int)ci->connect_fd : -1;
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr)
            m->ip = key_of(ci->client_addr);
        m->deadline = now_s() + g->o.request_timeout;
        pthread_mutex_lock(&g->mu);
        m->next = g->conns;
        if (g->conns)
            g->conns->prev = m;
        g->conns = m;
        pthread_mutex_unlock(&g->mu);
        *socket_context = m;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        mconn *m = *socket_context;
        if (!m)
            return;
        pthread_mutex_lock(&g->mu);
        if (m->prev)
            m->prev->next = m->next;
        else
            g->conns = m->next;
        if (m->next)
            m->next->prev = m->prev;
        ip_add(g, &m->ip, -1);
        pthread_mutex_unlock(&g->mu);
        free(m);
        *socket_context = NULL;
    }
}

void srv_gate_set_phase(srv_gate *g, struct MHD_Connection *c, srv_gate_phase p)
{
    if (!g)
        return;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    mconn *m = ci ? ci->socket_context : NULL;
    if (!m)
        return;
    double now = now_s();
    pthread_mutex_lock(&g->mu);
    m->deadline = p == SRV_GATE_BODY   ? now + g->o.request_timeout
                  : p == SRV_GATE_IDLE ? now + g->o.header_timeout
                                       : 0;
    pthread_mutex_unlock(&g->mu);
}
