/* health.c: grpc.health.v1.Health. The server's status is SERVING from start
 * until shutdown begins, then NOT_SERVING; it applies to the whole server ("")
 * and to ember.v1.InstanceService. Check answers NOT_FOUND for other services;
 * Watch answers SERVICE_UNKNOWN for them and keeps the stream open, as the
 * health protocol says. Watch streams get the change to NOT_SERVING at
 * shutdown, then end. */
#include "agent/server/internal.h"
#include "common/cleanup.h"
#include "common/mem.h"
#include "grpc/health/v1/health.pb-c.h"

#include <string.h>

typedef struct srv__hwatch {
  bool known; /* the watched service is one of ours */
} srv__hwatch;

static bool srv__known_service(const char *name)
{
  return name[0] == '\0' || strcmp(name, "ember.v1.InstanceService") == 0;
}

static grpc_byte_buffer *srv__status_bb(int status)
{
  Grpc__Health__V1__HealthCheckResponse out = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  out.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
  return srv_pack_bb(&out.base);
}

static int srv__current(srv_server *s)
{
  pthread_mutex_lock(&s->mu);
  bool serving = s->serving;
  pthread_mutex_unlock(&s->mu);
  return serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                 : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

int srv_unary_health_check(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                           uint8_t **resp, size_t *rl, cmn_error *err)
{
  Grpc__Health__V1__HealthCheckRequest *r =
      grpc__health__v1__health_check_request__unpack(NULL, len, req);
  if (r == NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "cannot decode HealthCheckRequest");
  bool known = srv__known_service(r->service);
  if (!known)
    cmn_err_set(err, CMN_NOT_FOUND, "unknown service '%s'", r->service);
  grpc__health__v1__health_check_request__free_unpacked(r, NULL);
  if (!known)
    return -1;
  Grpc__Health__V1__HealthCheckResponse out = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  int status = srv__current(s);
  out.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
  return srv_pack(&out.base, resp, rl);
}

void srv_health_watch_start(srv_call *c)
{
  /* c->req was flattened and its strings checked by srv__on_request. */
  Grpc__Health__V1__HealthCheckRequest *r =
      grpc__health__v1__health_check_request__unpack(NULL, c->req_len, c->req);
  if (r == NULL) {
    srv_call_finish(c, NULL, CMN_INVALID_ARGUMENT, "cannot decode HealthCheckRequest");
    return;
  }
  srv__hwatch *h = cmn_calloc(1, sizeof(*h));
  h->known = srv__known_service(r->service);
  grpc__health__v1__health_check_request__free_unpacked(r, NULL);
  pthread_mutex_lock(&c->mu);
  c->priv = h;
  c->priv_free = free;
  pthread_mutex_unlock(&c->mu);
  /* Register first, then send the current status: a change made in between
   * reaches this stream through the broadcast. */
  srv_stream_register(c, SRV_STREAM_HEALTH);
  int st = h->known ? srv__current(c->srv)
                    : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
  pthread_mutex_lock(&c->mu);
  srv_stream_push_locked(c, srv__status_bb(st));
  pthread_mutex_unlock(&c->mu);
}

void srv_health_broadcast_locked(srv_server *s)
{
  int st = s->serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
  for (srv_call *c = s->streams; c != NULL; c = c->stream_next) {
    if (c->stream_kind != SRV_STREAM_HEALTH)
      continue;
    pthread_mutex_lock(&c->mu);
    srv__hwatch *h = c->priv;
    if (h != NULL && h->known)
      srv_stream_push_locked(c, srv__status_bb(st));
    pthread_mutex_unlock(&c->mu);
  }
}
