/* metrics_http.c: serves GET /metrics (Prometheus text format 0.0.4) over
 * plain HTTP with libmicrohttpd, on one internal thread that polls the
 * listening socket and its connections. Opt-in (--metrics-listen); the text
 * holds no secrets but reveals instance counts, so bind it to loopback or a
 * private interface. Without libmicrohttpd at build time, starting fails with
 * UNIMPLEMENTED and --metrics-file still works. */
#include "agent/metrics_agent.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/mem.h"

#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#ifdef EMBER_HAVE_MICROHTTPD
#include <microhttpd.h>

#define METRICS_HTTP_MAX_CONNECTIONS 32
#define METRICS_HTTP_TIMEOUT_S 10

struct agent_metrics_http {
  agent_metrics *metrics;
  struct MHD_Daemon *daemon;
  int port;
};

static void metrics_http__log(void *cls, const char *fm, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void metrics_http__log(void *cls, const char *fm, va_list ap)
{
  cleanup_free char *msg = cmn_vasprintf(fm, ap);
  size_t n = strlen(msg);
  while (n > 0 && msg[n - 1] == '\n')
    msg[--n] = '\0';
  cmn_warn(NULL, "metrics", "http: %s", msg);
}

static enum MHD_Result metrics_http__reply(struct MHD_Connection *conn, unsigned status,
                                           const char *ctype, char *body, size_t len)
{
  struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, body, free);
  if (r == NULL) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  enum MHD_Result ret = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ret;
}

/* Answers on the first call for the request: GET and HEAD carry no body. */
static enum MHD_Result metrics_http__handle(void *cls, struct MHD_Connection *conn, const char *url,
                                            const char *method, const char *version,
                                            const char *upload_data, size_t *upload_size,
                                            void **con_cls)
{
  agent_metrics_http *h = cls;
  const char *text_type = "text/plain; charset=utf-8";
  if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
    return metrics_http__reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text_type,
                               cmn_strdup("only GET and HEAD\n"), 17);
  if (strcmp(url, "/metrics") != 0) {
    char *body = cmn_strdup("not found: emberd serves /metrics\n");
    return metrics_http__reply(conn, MHD_HTTP_NOT_FOUND, text_type, body, strlen(body));
  }
  size_t len = 0;
  char *body = agent_metrics_render(h->metrics, &len);
  return metrics_http__reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body,
                             len);
}

/* "host:port", "[v6]:port" -> the first address getaddrinfo gives. */
static int metrics_http__resolve(const char *listen, struct sockaddr_storage *ss, socklen_t *sslen,
                                 int *port, cmn_error *err)
{
  const char *colon = strrchr(listen != NULL ? listen : "", ':');
  if (listen == NULL || colon == NULL || colon == listen || colon[1] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "metrics listen address '%s' is not HOST:PORT (e.g. 127.0.0.1:9464)",
                       listen ? listen : "");
  cleanup_free char *host = cmn_strndup(listen, (size_t)(colon - listen));
  size_t hl = strlen(host);
  if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
    memmove(host, host + 1, hl - 2);
    host[hl - 2] = '\0';
  }
  char *end = NULL;
  errno = 0;
  long p = strtol(colon + 1, &end, 10);
  if (errno != 0 || *end != '\0' || p < 0 || p > 65535)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "metrics listen address '%s': bad port", listen);
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
  struct addrinfo *res = NULL;
  int e = getaddrinfo(host, colon + 1, &hints, &res);
  if (e != 0 || res == NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "metrics listen address '%s': %s", listen,
                       gai_strerror(e));
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *sslen = res->ai_addrlen;
  freeaddrinfo(res);
  *port = (int)p;
  return 0;
}

agent_metrics_http *agent_metrics_http_start(agent_metrics *m, const char *listen, cmn_error *err)
{
  struct sockaddr_storage ss;
  socklen_t sslen = 0;
  int port = 0;
  if (metrics_http__resolve(listen, &ss, &sslen, &port, err) < 0)
    return NULL;
  agent_metrics_http *h = cmn_calloc(1, sizeof(*h));
  h->metrics = m;
  unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
  if (ss.ss_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  h->daemon = MHD_start_daemon(
      flags, (uint16_t)port, NULL, NULL, metrics_http__handle, h,
      /* The logger first, so that no option's complaint goes to stderr raw. */
      MHD_OPTION_EXTERNAL_LOGGER, metrics_http__log, NULL, MHD_OPTION_SOCK_ADDR,
      (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_HTTP_MAX_CONNECTIONS,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_HTTP_TIMEOUT_S, MHD_OPTION_END);
  if (h->daemon == NULL) {
    free(h);
    cmn_err_set(err, CMN_FAILED_PRECONDITION,
                "cannot serve metrics on %s: the address is in use, not local, or not "
                "permitted",
                listen);
    return NULL;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
  h->port = info != NULL ? info->port : port;
  cmn_info(NULL, "metrics", "serving Prometheus metrics on %s, port %d, at /metrics", listen,
           h->port);
  return h;
}

int agent_metrics_http_port(const agent_metrics_http *h) { return h != NULL ? h->port : 0; }

void agent_metrics_http_stop(agent_metrics_http *h)
{
  if (h == NULL)
    return;
  MHD_stop_daemon(h->daemon);
  free(h);
}

#else /* !EMBER_HAVE_MICROHTTPD */

struct agent_metrics_http {
  int unused;
};

agent_metrics_http *agent_metrics_http_start(agent_metrics *m, const char *listen, cmn_error *err)
{
  cmn_err_set(err, CMN_UNIMPLEMENTED,
              "emberd was built without libmicrohttpd: --metrics-listen %s is unavailable "
              "(use --metrics-file)",
              listen ? listen : "");
  return NULL;
}

int agent_metrics_http_port(const agent_metrics_http *h) { return 0; }

void agent_metrics_http_stop(agent_metrics_http *h) { free(h); }

#endif
