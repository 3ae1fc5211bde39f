/* registry.c: the OCI distribution client (contracts in registry.h).
 *
 * One pull = one curl easy handle (connections are reused across its
 * requests), one lease on the store (blobs held until the record commits),
 * one deadline. Bodies stream through a write callback into memory (manifests,
 * bounded) or into a store blob writer (verified while streaming). */
#include "agent/image/registry.h"
#include "agent/image/digest.h"
#include "agent/image/manifest.h"
#include "agent/image/ref.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/statvfs.h>
#include <time.h>

#define ACCEPT_ALL                                                                                 \
  "Accept: " IMG_MT_OCI_INDEX ", " IMG_MT_OCI_MANIFEST ", " IMG_MT_DOCKER_LIST                     \
  ", " IMG_MT_DOCKER_MANIFEST
#define TOKEN_MAX (256 << 10)
#define ERRBODY_MAX 2048
#define MAX_REDIRECTS 5
#define PROGRESS_STEP (1 << 20)

typedef struct pull_ctx {
  img_store *s;
  const img_registry_opts *ro;
  const img_pull_opts *po;
  img_ref ref;
  img_lease *lease;
  CURL *curl;
  bool http; /* plain HTTP to this registry */
  bool loopback;
  bool insecure;
  char *auth;        /* "Authorization: ..." for the registry, or NULL */
  char *user, *pass; /* Basic credentials, or NULL */
  int64_t deadline_ms;
  long pull_timeout_s, low_speed_s, connect_s;
  int64_t done, total; /* overall progress */
  size_t blob_index, n_blobs;
  char errbuf[CURL_ERROR_SIZE];
} pull_ctx;

/* One response, as seen through the callbacks. */
typedef struct resp {
  pull_ctx *c;
  long status; /* of the latest header block */
  char *www_auth;
  char *content_type;
  char *docker_digest;
  int64_t content_length; /* -1 when absent */
  /* memory sink */
  char *buf;
  size_t len;
  size_t max;
  bool oversized;
  /* blob sink */
  img_blob_writer *w;
  const char *digest;
  int64_t expect;
  int64_t last_report;
  cmn_error werr;
  bool werr_set;
  char errbody[ERRBODY_MAX];
  size_t errlen;
} resp;

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void resp_reset_headers(resp *r)
{
  free(r->www_auth);
  free(r->content_type);
  free(r->docker_digest);
  r->www_auth = r->content_type = r->docker_digest = NULL;
  r->content_length = -1;
}

static void resp_free(resp *r)
{
  resp_reset_headers(r);
  free(r->buf);
  r->buf = NULL;
}

static void progress(pull_ctx *c, const char *phase, const char *digest, int64_t bd, int64_t bt)
{
  if (c->po == NULL || c->po->progress == NULL)
    return;
  img_pull_progress p = {.phase = phase,
                         .digest = digest,
                         .blob_done = bd,
                         .blob_total = bt,
                         .done = c->done,
                         .total = c->total,
                         .blob_index = c->blob_index,
                         .n_blobs = c->n_blobs};
  c->po->progress(c->po->opaque, &p);
}

static char *trim_dup(const char *p, size_t n)
{
  while (n > 0 && (*p == ' ' || *p == '\t')) {
    p++;
    n--;
  }
  while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == '\n' || p[n - 1] == ' '))
    n--;
  return cmn_strndup(p, n);
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
  resp *r = ud;
  size_t n = size * nmemb;
  if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
    resp_reset_headers(r);
    const char *sp = memchr(data, ' ', n);
    r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    return n;
  }
  const char *colon = memchr(data, ':', n);
  if (colon == NULL)
    return n;
  size_t kl = (size_t)(colon - data);
  const char *v = colon + 1;
  size_t vl = n - kl - 1;
  if (kl == 16 && strncasecmp(data, "WWW-Authenticate", kl) == 0 && r->www_auth == NULL)
    r->www_auth = trim_dup(v, vl > 4096 ? 4096 : vl);
  else if (kl == 12 && strncasecmp(data, "Content-Type", kl) == 0 && r->content_type == NULL)
    r->content_type = trim_dup(v, vl > 256 ? 256 : vl);
  else if (kl == 21 && strncasecmp(data, "Docker-Content-Digest", kl) == 0)
    r->docker_digest = trim_dup(v, vl > 128 ? 128 : vl);
  else if (kl == 14 && strncasecmp(data, "Content-Length", kl) == 0) {
    cleanup_free char *t = trim_dup(v, vl > 32 ? 32 : vl);
    r->content_length = strtoll(t, NULL, 10);
    if (r->status == 200 && r->content_length > 0) {
      /* Refuse early what cannot be right. */
      if (r->w == NULL && r->max > 0 && r->content_length > (int64_t)r->max) {
        r->oversized = true;
        return 0;
      }
      if (r->w != NULL && r->expect >= 0 && r->content_length > r->expect) {
        cmn_err_set(&r->werr, CMN_UNAVAILABLE,
                    "registry announces %lld bytes for blob %s, its descriptor says %lld",
                    (long long)r->content_length, r->digest, (long long)r->expect);
        r->werr_set = true;
        return 0;
      }
    }
  }
  return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
  resp *r = ud;
  size_t n = size * nmemb;
  if (r->status != 200) { /* keep a little of an error body for the message */
    size_t k = n < sizeof(r->errbody) - 1 - r->errlen ? n : sizeof(r->errbody) - 1 - r->errlen;
    memcpy(r->errbody + r->errlen, data, k);
    r->errlen += k;
    r->errbody[r->errlen] = '\0';
    return n;
  }
  if (r->w != NULL) {
    if (img_blob_write(r->w, data, n, &r->werr) < 0) {
      r->werr_set = true;
      return 0;
    }
    pull_ctx *c = r->c;
    c->done += (int64_t)n;
    int64_t wr = img_blob_written(r->w);
    if (wr - r->last_report >= PROGRESS_STEP) {
      r->last_report = wr;
      progress(c, "downloading", r->digest, wr, r->expect);
    }
    return n;
  }
  if (r->len + n > r->max) {
    r->oversized = true;
    return 0;
  }
  r->buf = cmn_realloc(r->buf, r->len + n + 1);
  memcpy(r->buf + r->len, data, n);
  r->len += n;
  r->buf[r->len] = '\0';
  return n;
}

static int on_xfer(void *ud, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln)
{
  pull_ctx *c = ud;
  if (c->po != NULL && c->po->cancelled != NULL && c->po->cancelled(c->po->opaque))
    return 1;
  return 0;
}

static bool host_is_loopback(const char *host)
{
  return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
         strcmp(host, "[::1]") == 0;
}

/* Configures c->curl for one GET of url. */
static int setup(pull_ctx *c, const char *url, const char *const *headers, size_t nh,
                 struct curl_slist **list, resp *r, cmn_error *err)
{
  CURL *h = c->curl;
  curl_easy_reset(h);
  int64_t left = c->deadline_ms - now_ms();
  if (left <= 0)
    return cmn_err_set(err, CMN_DEADLINE_EXCEEDED, "pull did not finish within %ld s",
                       c->pull_timeout_s);
  for (size_t i = 0; i < nh; i++)
    if (headers[i] != NULL)
      *list = curl_slist_append(*list, headers[i]);
  c->errbuf[0] = '\0';
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, *list);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, c->http ? "http,https" : "https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, (long)MAX_REDIRECTS);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->connect_s);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->low_speed_s);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)left);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "ember-image/1");
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_xfer);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
  if (c->ro->ca_file != NULL)
    curl_easy_setopt(h, CURLOPT_CAINFO, c->ro->ca_file);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
  return 0;
}

/* Turns a curl failure into an error. */
static int curl_fail(pull_ctx *c, CURLcode rc, resp *r, const char *what, cmn_error *err)
{
  const char *detail = c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);
  if (r->werr_set) {
    *err = r->werr;
    if (err->code == CMN_INVALID_ARGUMENT) /* the registry's bytes, not the request */
      err->code = CMN_UNAVAILABLE;
    return cmn_err_prefix(err, "registry %s", c->ref.registry);
  }
  if (r->oversized)
    return cmn_err_set(err, CMN_RESOURCE_EXHAUSTED,
                       "registry %s: %s is larger than the limit of %zu bytes (oversized "
                       "manifest)",
                       c->ref.registry, what, r->max);
  switch (rc) {
  case CURLE_ABORTED_BY_CALLBACK:
    return cmn_err_set(err, CMN_CANCELLED, "pull of %s cancelled", what);
  case CURLE_OPERATION_TIMEDOUT:
    if (now_ms() >= c->deadline_ms)
      return cmn_err_set(err, CMN_DEADLINE_EXCEEDED,
                         "registry %s: pull did not finish within %ld s (%s)", c->ref.registry,
                         c->pull_timeout_s, what);
    return cmn_err_set(err, CMN_DEADLINE_EXCEEDED,
                       "registry %s stalled: no progress on %s within the timeout (connect "
                       "%ld s, stall %ld s): %s",
                       c->ref.registry, what, c->connect_s, c->low_speed_s, detail);
  case CURLE_PARTIAL_FILE:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
    return cmn_err_set(err, CMN_UNAVAILABLE,
                       "registry %s: truncated download of %s (connection closed early): %s",
                       c->ref.registry, what, detail);
  case CURLE_TOO_MANY_REDIRECTS:
    return cmn_err_set(err, CMN_UNAVAILABLE, "registry %s: more than %d redirects for %s",
                       c->ref.registry, MAX_REDIRECTS, what);
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_CACERT_BADFILE:
    return cmn_err_set(err, CMN_UNAVAILABLE,
                       "registry %s: TLS failed (%s); give its CA with registry_ca_file, or "
                       "list it in insecure_registries for plain HTTP",
                       c->ref.registry, detail);
  default:
    return cmn_err_set(err, CMN_UNAVAILABLE, "registry %s: %s: %s", c->ref.registry, what, detail);
  }
}

static char *b64(const char *s)
{
  size_t n = strlen(s);
  char *out = cmn_malloc(4 * ((n + 2) / 3) + 1);
  EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
  return out;
}

/* Parses `key="value"` pairs of a Bearer challenge. */
static char *challenge_param(const char *ch, const char *key)
{
  size_t kl = strlen(key);
  for (const char *p = ch; (p = strcasestr(p, key)) != NULL; p += kl) {
    if (p != ch && p[-1] != ' ' && p[-1] != ',')
      continue;
    if (p[kl] != '=')
      continue;
    const char *v = p + kl + 1;
    if (*v == '"') {
      const char *e = strchr(v + 1, '"');
      return e ? cmn_strndup(v + 1, (size_t)(e - v - 1)) : NULL;
    }
    size_t n = strcspn(v, ", ");
    return cmn_strndup(v, n);
  }
  return NULL;
}

/* The Bearer token flow: GET realm?service=&scope= (Basic creds if any). */
static int fetch_token(pull_ctx *c, const char *challenge, cmn_error *err)
{
  cleanup_free char *realm = challenge_param(challenge, "realm");
  cleanup_free char *service = challenge_param(challenge, "service");
  cleanup_free char *scope = challenge_param(challenge, "scope");
  if (realm == NULL || realm[0] == '\0')
    return cmn_err_set(err, CMN_UNAVAILABLE,
                       "registry %s: bad auth challenge (Bearer without realm): '%.200s'",
                       c->ref.registry, challenge);
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL;
  bool ok = curl_url_set(u, CURLUPART_URL, realm, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK;
  bool https = ok && strcmp(scheme, "https") == 0;
  bool http_ok = ok && strcmp(scheme, "http") == 0 &&
                 (c->insecure || host_is_loopback(host) || strcmp(host, "::1") == 0 ||
                  strcmp(host, "[::1]") == 0);
  curl_free(scheme);
  curl_free(host);
  if (!https && !http_ok) {
    curl_url_cleanup(u);
    return cmn_err_set(err, CMN_UNAVAILABLE,
                       "registry %s: bad auth challenge: token realm '%.200s' is not an "
                       "https URL (http only for loopback or insecure registries)",
                       c->ref.registry, realm);
  }
  cleanup_free char *def_scope = cmn_asprintf("repository:%s:pull", c->ref.repository);
  const char *sc = scope ? scope : def_scope;
  char *esc_sc = curl_easy_escape(c->curl, sc, 0);
  char *esc_sv = service ? curl_easy_escape(c->curl, service, 0) : NULL;
  cleanup_free char *q =
      cmn_asprintf("scope=%s%s%s", esc_sc, esc_sv ? "&service=" : "", esc_sv ? esc_sv : "");
  curl_free(esc_sc);
  curl_free(esc_sv);
  curl_url_set(u, CURLUPART_QUERY, q, CURLU_APPENDQUERY);
  char *url = NULL;
  curl_url_get(u, CURLUPART_URL, &url, 0);
  curl_url_cleanup(u);
  resp r = {.c = c, .max = TOKEN_MAX, .content_length = -1, .expect = -1};
  struct curl_slist *list = NULL;
  cleanup_free char *basic = NULL;
  if (c->user != NULL) {
    cleanup_free char *up = cmn_asprintf("%s:%s", c->user, c->pass ? c->pass : "");
    cleanup_free char *enc = b64(up);
    basic = cmn_asprintf("Authorization: Basic %s", enc);
  }
  const char *hdrs[] = {basic};
  int ret = setup(c, url, hdrs, 1, &list, &r, err);
  curl_free(url);
  if (ret == 0) {
    CURLcode rc = curl_easy_perform(c->curl);
    if (rc != CURLE_OK)
      ret = curl_fail(c, rc, &r, "token", err);
    else if (r.status == 401 || r.status == 403)
      ret =
          cmn_err_set(err, CMN_PERMISSION_DENIED,
                      "registry %s: the token service refused %s (HTTP %ld)", c->ref.registry,
                      c->user ? "the credentials" : "anonymous access; give credentials", r.status);
    else if (r.status != 200)
      ret = cmn_err_set(err, CMN_UNAVAILABLE, "registry %s: token service answered HTTP %ld",
                        c->ref.registry, r.status);
  }
  if (ret == 0) {
    cJSON *o = r.buf ? cJSON_Parse(r.buf) : NULL;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "token");
    if (!cJSON_IsString(t) || t->valuestring[0] == '\0')
      t = cJSON_GetObjectItemCaseSensitive(o, "access_token");
    bool good = cJSON_IsString(t) && t->valuestring[0] != '\0' &&
                strcspn(t->valuestring, "\r\n") == strlen(t->valuestring);
    if (good) {
      free(c->auth);
      c->auth = cmn_asprintf("Authorization: Bearer %s", t->valuestring);
    } else {
      ret = cmn_err_set(err, CMN_UNAVAILABLE,
                        "registry %s: the token service's answer holds no token", c->ref.registry);
    }
    cJSON_Delete(o);
  }
  curl_slist_free_all(list);
  resp_free(&r);
  return ret;
}

/* GET path on the registry, handling auth challenges and the loopback HTTP
 * fallback. r is prepared by the caller (sink); on return r->status is set. */
static int registry_get(pull_ctx *c, const char *path, const char *accept, resp *r,
                        const char *what, cmn_error *err)
{
  bool tried_auth = false;
  bool tried_http = false;
  for (int attempt = 0; attempt < 4; attempt++) {
    cleanup_free char *url =
        cmn_asprintf("%s://%s%s", c->http ? "http" : "https", c->ref.registry, path);
    struct curl_slist *list = NULL;
    const char *hdrs[] = {accept, c->auth};
    r->errlen = 0;
    r->errbody[0] = '\0';
    if (setup(c, url, hdrs, 2, &list, r, err) < 0) {
      curl_slist_free_all(list);
      return -1;
    }
    CURLcode rc = curl_easy_perform(c->curl);
    curl_slist_free_all(list);
    if (rc == CURLE_SSL_CONNECT_ERROR && !c->http && c->loopback && !tried_http && r->len == 0 &&
        (r->w == NULL || img_blob_written(r->w) == 0)) {
      cmn_info(NULL, "image-pull", "registry %s: no TLS on a loopback registry; using HTTP",
               c->ref.registry);
      c->http = true;
      tried_http = true;
      continue;
    }
    if (rc != CURLE_OK)
      return curl_fail(c, rc, r, what, err);
    long st = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &st);
    r->status = st;
    if (st == 401 && !tried_auth) {
      tried_auth = true;
      const char *ch = r->www_auth;
      if (ch != NULL && strncasecmp(ch, "Bearer ", 7) == 0) {
        if (fetch_token(c, ch + 7, err) < 0)
          return -1;
        continue;
      }
      if (ch != NULL && strncasecmp(ch, "Basic", 5) == 0) {
        if (c->user == NULL)
          return cmn_err_set(err, CMN_PERMISSION_DENIED,
                             "registry %s needs credentials (Basic auth): give username and "
                             "password, or add it to registry_credentials_file",
                             c->ref.registry);
        if (c->http && !c->insecure && !c->loopback)
          return cmn_err_set(err, CMN_PERMISSION_DENIED,
                             "registry %s: refusing to send a password over plain HTTP",
                             c->ref.registry);
        cleanup_free char *up = cmn_asprintf("%s:%s", c->user, c->pass ? c->pass : "");
        cleanup_free char *enc = b64(up);
        free(c->auth);
        c->auth = cmn_asprintf("Authorization: Basic %s", enc);
        continue;
      }
      return cmn_err_set(err, CMN_UNAVAILABLE,
                         "registry %s: bad auth challenge: '%.200s' (expected Basic or "
                         "Bearer realm=...)",
                         c->ref.registry, ch ? ch : "(no WWW-Authenticate)");
    }
    if (st == 401 || st == 403)
      return cmn_err_set(err, CMN_PERMISSION_DENIED,
                         "registry %s refused access to %s (HTTP %ld)%s", c->ref.registry,
                         c->ref.repository, st,
                         c->user ? ": check the credentials" : ": give credentials");
    if (st == 404)
      return cmn_err_set(err, CMN_NOT_FOUND, "registry %s: %s not found (HTTP 404): %.200s",
                         c->ref.registry, what, r->errbody);
    if (st != 200) /* 429, 5xx and anything unexpected: the registry is not serving */
      return cmn_err_set(err, CMN_UNAVAILABLE, "registry %s: %s: HTTP %ld: %.200s", c->ref.registry,
                         what, st, r->errbody);
    return 0;
  }
  return cmn_err_set(err, CMN_PERMISSION_DENIED, "registry %s: authentication loop for %s",
                     c->ref.registry, what);
}

/* ---------------- manifests ---------------- */

/* Fetches manifests/<target> into *body and checks it against want_digest
 * (when not NULL) or the registry's Docker-Content-Digest. */
static int get_manifest(pull_ctx *c, const char *target, const char *want_digest, char **body,
                        size_t *len, char digest[IMG_DIGEST_LEN + 1], char **ctype, cmn_error *err)
{
  int64_t max = c->ro->manifest_max > 0 ? c->ro->manifest_max : IMG_MANIFEST_MAX;
  resp r = {.c = c, .max = (size_t)max, .content_length = -1, .expect = -1};
  cleanup_free char *path = cmn_asprintf("/v2/%s/manifests/%s", c->ref.repository, target);
  cleanup_free char *what = cmn_asprintf("manifest %s:%s", c->ref.repository, target);
  if (registry_get(c, path, ACCEPT_ALL, &r, what, err) < 0) {
    resp_free(&r);
    return -1;
  }
  if (r.buf == NULL) {
    resp_free(&r);
    return cmn_err_set(err, CMN_UNAVAILABLE, "registry %s: empty %s", c->ref.registry, what);
  }
  img_sha256_buf(r.buf, r.len, digest);
  if (want_digest != NULL && strcmp(want_digest, digest) != 0) {
    cmn_err_set(err, CMN_UNAVAILABLE, "registry %s: %s: digest mismatch: expected %s, got %s",
                c->ref.registry, what, want_digest, digest);
    resp_free(&r);
    return -1;
  }
  if (want_digest == NULL && r.docker_digest != NULL && img_digest_valid(r.docker_digest) &&
      strcmp(r.docker_digest, digest) != 0) {
    cmn_err_set(err, CMN_UNAVAILABLE,
                "registry %s: %s: digest mismatch: Docker-Content-Digest %s, content %s",
                c->ref.registry, what, r.docker_digest, digest);
    resp_free(&r);
    return -1;
  }
  *body = r.buf;
  *len = r.len;
  r.buf = NULL;
  *ctype = r.content_type ? cmn_strndup(r.content_type, strcspn(r.content_type, "; ")) : NULL;
  resp_free(&r);
  return 0;
}

/* ---------------- blobs ---------------- */

static int fetch_blob(pull_ctx *c, const img_desc *d, cmn_error *err)
{
  img_blob_writer *w = NULL;
  int rc = img_blob_begin(c->lease, d->digest, d->size, 0, c->po ? c->po->cancelled : NULL,
                          c->po ? c->po->opaque : NULL, &w, err);
  if (rc < 0)
    return -1;
  if (rc == 1) {
    progress(c, "cached", d->digest, d->size, d->size);
    return 0;
  }
  resp r = {.c = c, .w = w, .digest = d->digest, .expect = d->size, .content_length = -1};
  cleanup_free char *path = cmn_asprintf("/v2/%s/blobs/%s", c->ref.repository, d->digest);
  cleanup_free char *what = cmn_asprintf("blob %s", d->digest);
  int64_t done0 = c->done;
  progress(c, "downloading", d->digest, 0, d->size);
  if (registry_get(c, path, NULL, &r, what, err) < 0) {
    img_blob_abort(w);
    resp_free(&r);
    c->done = done0;
    return -1;
  }
  resp_free(&r);
  if (img_blob_written(w) < d->size) {
    cmn_err_set(err, CMN_UNAVAILABLE,
                "registry %s: truncated download of blob %s: %lld of %lld bytes", c->ref.registry,
                d->digest, (long long)img_blob_written(w), (long long)d->size);
    img_blob_abort(w);
    return -1;
  }
  if (img_blob_commit(w, NULL, err) < 0) {
    if (err->code == CMN_INVALID_ARGUMENT)
      err->code = CMN_UNAVAILABLE;
    return cmn_err_prefix(err, "registry %s", c->ref.registry);
  }
  progress(c, "committed", d->digest, d->size, d->size);
  return 0;
}

/* Stores the manifest's bytes as a blob (held by the lease). */
static int store_bytes(pull_ctx *c, const char *digest, const char *buf, size_t len, cmn_error *err)
{
  img_blob_writer *w = NULL;
  int rc = img_blob_begin(c->lease, digest, (int64_t)len, 0, NULL, NULL, &w, err);
  if (rc != 0)
    return rc < 0 ? -1 : 0;
  if (img_blob_write(w, buf, len, err) < 0) {
    img_blob_abort(w);
    return -1;
  }
  return img_blob_commit(w, NULL, err);
}

/* ---------------- credentials ---------------- */

static const char *json_str(const cJSON *o, const char *k)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int load_credentials(pull_ctx *c, cmn_error *err)
{
  if (c->po != NULL && c->po->username != NULL && c->po->username[0] != '\0') {
    c->user = cmn_strdup(c->po->username);
    c->pass = cmn_strdup(c->po->password ? c->po->password : "");
    return 0;
  }
  if (c->ro->credentials_file == NULL)
    return 0;
  cleanup_free char *text = NULL;
  size_t len = 0;
  if (cmn_file_read(c->ro->credentials_file, 1 << 20, &text, &len, err) < 0)
    return cmn_err_prefix(err, "registry credentials file");
  cJSON *o = cJSON_Parse(text);
  if (!cJSON_IsObject(o)) {
    cJSON_Delete(o);
    return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                       "registry credentials file %s: not a JSON object", c->ro->credentials_file);
  }
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, c->ref.registry);
  if (e == NULL)
    e = cJSON_GetObjectItemCaseSensitive(o, c->ref.host);
  const char *u = json_str(e, "username");
  const char *p = json_str(e, "password");
  if (u != NULL) {
    c->user = cmn_strdup(u);
    c->pass = cmn_strdup(p ? p : "");
  }
  cJSON_Delete(o);
  return 0;
}

/* ---------------- the pull ---------------- */

static int check_disk(pull_ctx *c, int64_t need, cmn_error *err)
{
  struct statvfs sv;
  if (statvfs(img_store_root(c->s), &sv) != 0)
    return 0;
  int64_t avail = (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
  if (need > avail)
    return cmn_err_set(err, CMN_RESOURCE_EXHAUSTED,
                       "image needs %lld bytes to download; only %lld free on the file "
                       "system of %s",
                       (long long)need, (long long)avail, img_store_root(c->s));
  return 0;
}

static int do_pull(pull_ctx *c, const char *reference, img_record *out, cmn_error *err)
{
  progress(c, "resolving", NULL, 0, 0);
  cleanup_free char *body = NULL;
  cleanup_free char *ctype = NULL;
  size_t len = 0;
  char mdigest[IMG_DIGEST_LEN + 1];
  if (get_manifest(c, img_ref_target(&c->ref), c->ref.digest, &body, &len, mdigest, &ctype, err) <
      0)
    return -1;
  if (img_manifest_is_index(body, len, ctype)) {
    cleanup_free char *pick = NULL;
    if (img_index_pick(body, len, CMN_UNAVAILABLE, NULL, &pick, NULL, err) < 0)
      return cmn_err_prefix(err, "image %s", reference);
    free(body);
    free(ctype);
    body = ctype = NULL;
    if (get_manifest(c, pick, pick, &body, &len, mdigest, &ctype, err) < 0)
      return -1;
    if (img_manifest_is_index(body, len, ctype))
      return cmn_err_set(err, CMN_UNAVAILABLE,
                         "registry %s: the linux/amd64 entry of the index is another index",
                         c->ref.registry);
  }
  int ret = -1;
  img_record rec = {0};
  int64_t blob_max = c->ro->blob_max > 0 ? c->ro->blob_max : (int64_t)64 << 30;
  if (img_manifest_parse(body, len, mdigest, ctype, blob_max, CMN_UNAVAILABLE, &rec, err) < 0)
    return cmn_err_prefix(err, "registry %s: %s", c->ref.registry, reference);
  /* Hold what is there, add up what is missing, reserve it. */
  if (store_bytes(c, mdigest, body, len, err) < 0)
    goto out;
  img_desc *all[IMG_MAX_LAYERS + 1];
  size_t n_all = 0;
  all[n_all++] = &rec.config;
  for (size_t i = 0; i < rec.n_layers; i++) {
    bool dup = false;
    for (size_t j = 0; j < n_all && !dup; j++)
      dup = strcmp(all[j]->digest, rec.layers[i].digest) == 0;
    if (!dup)
      all[n_all++] = &rec.layers[i];
  }
  int64_t need = 0;
  for (size_t i = 0; i < n_all; i++) {
    img_lease_hold(c->lease, all[i]->digest);
    if (!img_store_has_blob(c->s, all[i]->digest))
      need += all[i]->size;
  }
  if (img_lease_reserve(c->lease, need, err) < 0 || check_disk(c, need, err) < 0) {
    cmn_err_prefix(err, "pull %s", reference);
    goto out;
  }
  c->total = need;
  c->n_blobs = n_all;
  for (size_t i = 0; i < n_all; i++) {
    c->blob_index = i;
    if (fetch_blob(c, all[i], err) < 0)
      goto out;
  }
  rec.names = cmn_calloc(2, sizeof(char *));
  rec.names[0] = img_ref_string(&c->ref);
  rec.n_names = 1;
  if (img_store_commit_record(c->lease, &rec, out, err) < 0)
    goto out;
  progress(c, "done", NULL, 0, 0);
  ret = 0;
out:
  img_record_free(&rec);
  return ret;
}

int img_pull(img_store *s, const img_registry_opts *ro, const char *reference,
             const img_pull_opts *po, img_record *out, cmn_error *err)
{
  if (out)
    memset(out, 0, sizeof(*out));
  static const img_registry_opts none = {0};
  pull_ctx c = {.s = s, .ro = ro ? ro : &none, .po = po};
  if (img_ref_parse(reference, &c.ref, err) < 0)
    return cmn_err_field(err, "reference");
  c.loopback = host_is_loopback(c.ref.host);
  for (size_t i = 0; i < c.ro->n_insecure; i++)
    if (strcmp(c.ro->insecure[i], c.ref.registry) == 0 ||
        strcmp(c.ro->insecure[i], c.ref.host) == 0)
      c.insecure = true;
  c.http = c.insecure;
  c.connect_s = c.ro->connect_timeout_s > 0 ? c.ro->connect_timeout_s : 15;
  c.low_speed_s = c.ro->low_speed_time_s > 0 ? c.ro->low_speed_time_s : 30;
  c.pull_timeout_s = c.ro->pull_timeout_s > 0 ? c.ro->pull_timeout_s : 3600;
  c.deadline_ms = now_ms() + c.pull_timeout_s * 1000;
  int ret = load_credentials(&c, err);
  if (ret == 0) {
    c.curl = curl_easy_init();
    if (c.curl == NULL)
      ret = cmn_err_set(err, CMN_INTERNAL, "curl_easy_init failed");
  }
  if (ret == 0) {
    c.lease = img_lease_new(s);
    ret = do_pull(&c, reference, out, err);
    img_lease_free(c.lease);
    if (ret < 0) { /* nothing of a failed pull stays */
      cmn_error gerr = {0};
      if (img_store_gc(s, NULL, NULL, &gerr) < 0)
        cmn_warn(NULL, "image-pull", "gc after a failed pull: %s", gerr.msg);
    }
  }
  if (c.curl)
    curl_easy_cleanup(c.curl);
  free(c.auth);
  free(c.user);
  free(c.pass);
  img_ref_free(&c.ref);
  return ret;
}
