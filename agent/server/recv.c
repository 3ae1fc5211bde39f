/* recv.c: receiving the messages of a client stream on a thread, one at a
 * time (ImportImage, ExecInstance, CopyToInstance): the thread posts
 * RECV_MESSAGE and waits for its completion, which a worker hands over; and
 * srv_call_gone, the one test of "this call has ended" for such threads. */
#include "agent/server/internal.h"

#include <grpc/byte_buffer.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

void srv_grecv_init(srv_grecv *r)
{
  memset(r, 0, sizeof *r);
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
}

void srv_grecv_fini(srv_grecv *r)
{
  if (r->bb != NULL)
    grpc_byte_buffer_destroy(r->bb);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
}

/* The call's RECV_MESSAGE completion (a worker thread): hands the message to
 * the thread waiting in srv_grecv_next. c->priv starts with the srv_grecv. */
static void srv__grecv_on_recv(srv_call *c, bool ok)
{
  srv_grecv *r = c->priv;
  pthread_mutex_lock(&c->mu);
  grpc_byte_buffer *bb = c->recv_buf;
  c->recv_buf = NULL;
  pthread_mutex_unlock(&c->mu);
  pthread_mutex_lock(&r->mu);
  r->bb = bb;
  r->ok = ok;
  r->done = true;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  srv_call_unref(c);
}

void srv_grecv_attach(srv_call *c, srv_grecv *r, void (*priv_free)(void *))
{
  pthread_mutex_lock(&c->mu);
  c->priv = r;
  c->priv_free = priv_free;
  c->t_recv.fn = srv__grecv_on_recv; /* set once, before any receive is posted */
  pthread_mutex_unlock(&c->mu);
}

bool srv_call_gone(srv_call *c)
{
  pthread_mutex_lock(&c->mu);
  bool gone = c->closed || c->status_sent || c->finishing;
  pthread_mutex_unlock(&c->mu);
  if (!gone) {
    pthread_mutex_lock(&c->srv->mu);
    gone = c->srv->shutting_down;
    pthread_mutex_unlock(&c->srv->mu);
  }
  return gone;
}

int srv_grecv_next(srv_call *c, srv_grecv *r, uint8_t **data, size_t *len, cmn_error *err)
{
  *data = NULL;
  *len = 0;
  if (r->eof)
    return 0;
  pthread_mutex_lock(&r->mu);
  r->done = false;
  pthread_mutex_unlock(&r->mu);
  pthread_mutex_lock(&c->mu);
  bool posted = false;
  if (!c->closed && !c->status_sent && !c->finishing) {
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_buf;
    posted = srv_call_batch_locked(c, &op, 1, &c->t_recv);
  }
  pthread_mutex_unlock(&c->mu);
  if (!posted)
    return cmn_err_set(err, CMN_CANCELLED, "the call ended");
  /* Completes at the next message, the half-close, or the call's end. */
  pthread_mutex_lock(&r->mu);
  while (!r->done)
    pthread_cond_wait(&r->cv, &r->mu);
  grpc_byte_buffer *bb = r->bb;
  r->bb = NULL;
  bool ok = r->ok;
  pthread_mutex_unlock(&r->mu);
  if (bb == NULL) {
    if (!ok || srv_call_gone(c))
      return cmn_err_set(err, CMN_CANCELLED, "the call ended");
    r->eof = true;
    return 0;
  }
  *data = srv_bb_flatten(bb, len);
  grpc_byte_buffer_destroy(bb);
  if (*data == NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "cannot read a request message");
  if (srv_request_check(c->method, *data, *len, err) < 0) {
    free(*data);
    *data = NULL;
    return -1;
  }
  return 1;
}
