/* http_unix.c: one HTTP request over a unix stream socket with libcurl (see
 * http_unix.h). The host part of the URL is ignored by the server; "localhost"
 * keeps curl from resolving anything. */
#include "http_unix.h"
#include "mem.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

typedef struct http_buf {
  char *data;
  size_t len;
} http_buf;

/* Response bodies of VMM APIs are small; 4 MiB bounds a misbehaving server. */
#define HTTP_BODY_MAX (4u << 20)

static size_t http_write_cb(char *ptr, size_t size, size_t nmemb, void *user)
{
  http_buf *b = user;
  size_t n = size * nmemb;
  if (b->len + n > HTTP_BODY_MAX)
    return 0; /* makes curl fail with CURLE_WRITE_ERROR */
  b->data = cmn_realloc(b->data, b->len + n + 1);
  memcpy(b->data + b->len, ptr, n);
  b->len += n;
  b->data[b->len] = '\0';
  return n;
}

int cmn_http_request_timeout(const char *sock, const char *method, const char *path,
                             const char *json_body, int timeout_ms, long *status, char **body,
                             cmn_error *err)
{
  if (body != NULL)
    *body = NULL;
  *status = 0;
  CURL *c = curl_easy_init();
  if (c == NULL)
    return cmn_err_set(err, CMN_INTERNAL, "curl_easy_init failed");
  char curl_err[CURL_ERROR_SIZE] = "";
  http_buf buf = {cmn_strdup(""), 0};
  struct curl_slist *hdrs = NULL;
  hdrs = curl_slist_append(hdrs, "Accept: application/json");
  if (json_body != NULL)
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
  /* No "Expect: 100-continue" round trip for larger bodies. */
  hdrs = curl_slist_append(hdrs, "Expect:");
  char *url = cmn_asprintf("http://localhost%s", path);

  curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                   (long)(timeout_ms > 0 ? timeout_ms : CMN_HTTP_DEFAULT_TIMEOUT_MS));
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_write_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &buf);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
  if (json_body != NULL) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json_body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(json_body));
  }

  CURLcode rc = curl_easy_perform(c);
  int ret = 0;
  if (rc != CURLE_OK) {
    ret = cmn_err_set(err, CMN_UNAVAILABLE, "%s %s on %s: %s", method, path, sock,
                      curl_err[0] != '\0' ? curl_err : curl_easy_strerror(rc));
  } else {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    if (body != NULL) {
      *body = buf.data;
      buf.data = NULL;
    }
  }
  free(buf.data);
  free(url);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(c);
  return ret;
}

int cmn_http_request(const char *sock, const char *method, const char *path, const char *json_body,
                     long *status, char **body, cmn_error *err)
{
  return cmn_http_request_timeout(sock, method, path, json_body, CMN_HTTP_DEFAULT_TIMEOUT_MS,
                                  status, body, err);
}
