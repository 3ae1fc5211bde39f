/* http_unix.h: one HTTP request over a unix stream socket (libcurl), for VMM
 * REST APIs (Firecracker, Cloud Hypervisor).
 *
 * curl_global_init() must have been called once by the process (emberd's main
 * does it; tests do it themselves). Every call uses its own easy handle, so any
 * thread may call it. CURLOPT_NOSIGNAL is set: no SIGALRM, no signal handlers. */
#ifndef EMBER_COMMON_HTTP_UNIX_H
#define EMBER_COMMON_HTTP_UNIX_H

#include "error.h"

/* Default total timeout of cmn_http_request, in milliseconds. */
#define CMN_HTTP_DEFAULT_TIMEOUT_MS 60000

/* Sends `method path` (path starts with '/') to the server listening on the
 * unix socket sock, with json_body (may be NULL: no body) as
 * application/json. On a completed exchange returns 0 with *status set to the
 * HTTP status and *body to the response body (NUL-terminated, maybe "",
 * caller frees; body may be NULL when not wanted), whatever the status.
 * Returns -1 with err set (UNAVAILABLE, curl's reason) when no exchange
 * happened: no socket, refused, timed out, connection dropped. */
int cmn_http_request(const char *sock, const char *method, const char *path, const char *json_body,
                     long *status, char **body, cmn_error *err);
/* As cmn_http_request with an explicit total timeout (ms > 0). */
int cmn_http_request_timeout(const char *sock, const char *method, const char *path,
                             const char *json_body, int timeout_ms, long *status, char **body,
                             cmn_error *err);

#endif
