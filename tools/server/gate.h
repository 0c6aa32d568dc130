/*
 * gate.h - the server's front door: it accepts connections itself and
 * reads each new connection's request head before libmicrohttpd sees it,
 * and it keeps the deadlines of every connection.
 *
 *   - per-IP connection cap: a client over it gets 429 and the connection
 *     is closed;
 *   - header deadline: a head not complete within header_timeout gets 408;
 *   - strict framing (head.c): 400/414/431/505, answered here in JSON,
 *     then the connection is drained briefly and closed, so the client
 *     reads the answer instead of a reset;
 *   - a valid head: the connection goes to libmicrohttpd
 *     (MHD_add_connection), which reads the same bytes (they were peeked,
 *     not consumed);
 *   - request deadline: the watchdog shuts down a connection whose body is
 *     not complete request_timeout after its head, and an idle keep-alive
 *     connection (or one trickling its next head) after header_timeout.
 *     The deadline is total, never restarted by a byte.
 */
#ifndef MEDEMBED_SERVER_GATE_H
#define MEDEMBED_SERVER_GATE_H

#include <microhttpd.h>
#include <stdint.h>

#include "head.h"
#include "metrics.h"

typedef struct srv_gate srv_gate;

typedef struct srv_gate_opts {
    int listen_fd;             /* bound and listening; the gate owns it */
    struct MHD_Daemon *daemon; /* started with MHD_USE_NO_LISTEN_SOCKET */
    srv_head_limits head;
    double header_timeout;  /* seconds for a head */
    double request_timeout; /* seconds from a head to its complete body */
    long max_per_ip;        /* connections per client address */
    long max_pending;       /* connections still sending their head */
    long payload_limit;     /* for the message of the next one */
    int64_t max_announced;  /* a Content-Length over this gets 413 here */
    srv_metrics *metrics;
    void (*log)(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
} srv_gate_opts;

/* Starts the gate thread. Returns 0, or -1 with errno set. */
int srv_gate_start(const srv_gate_opts *o, srv_gate **out);
/* Stops accepting (closes the listening socket); heads in progress still
 * complete. */
void srv_gate_quiesce(srv_gate *g);
/* Stops the thread and closes every connection the gate still holds. Call
 * before MHD_stop_daemon. NULL is fine. */
void srv_gate_stop(srv_gate *g);
/* Frees the gate; after MHD_stop_daemon, whose connection notifications
 * still use it. NULL is fine. */
void srv_gate_free(srv_gate *g);

/* MHD_OPTION_NOTIFY_CONNECTION callback; cls is the gate. */
void srv_gate_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                     enum MHD_ConnectionNotificationCode toe);

/* Deadline phases of a connection's current request, from the handler. */
typedef enum srv_gate_phase {
    SRV_GATE_BODY,    /* head seen: the body must be complete by request_timeout */
    SRV_GATE_WORKING, /* body complete: no deadline while the server works */
    SRV_GATE_IDLE     /* answered: the next head must come within header_timeout */
} srv_gate_phase;
void srv_gate_set_phase(srv_gate *g, struct MHD_Connection *c, srv_gate_phase p);

#endif
