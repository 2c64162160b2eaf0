/* Ferry error codes: the same fixed set in plugins, on the wire and in clients.
 * Values never change meaning; new codes are only appended. */
#ifndef FERRY_ERRORS_H
#define FERRY_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ferry_code {
  FERRY_OK = 0,
  FERRY_E_UNKNOWN_FUNCTION = 1,    /* no function registered under that name */
  FERRY_E_BAD_REQUEST = 2,         /* malformed frame, arguments or protocol misuse */
  FERRY_E_BUSY = 3,                /* the plugin's queue is full: retry later */
  FERRY_E_TIMEOUT = 4,             /* the call passed its deadline */
  FERRY_E_CANCELLED = 5,           /* the call was cancelled */
  FERRY_E_WORKER_CRASHED = 6,      /* the worker process running the call died */
  FERRY_E_OUT_OF_MEMORY = 7,       /* the call ran out of memory */
  FERRY_E_PLUGIN_ERROR = 8,        /* the function reported an error */
  FERRY_E_PERMISSION_DENIED = 9,   /* the caller may not make this call */
  FERRY_E_SHUTTING_DOWN = 10,      /* the server is stopping */
  FERRY_E_SANDBOX_VIOLATION = 11,  /* the worker broke its sandbox */
  FERRY_E_CALL_DEPTH_EXCEEDED = 12,/* nested calls went too deep */
  FERRY_E_UNSUPPORTED_VERSION = 13,/* protocol or ABI version mismatch */
  FERRY_E_INTERNAL = 14,           /* a bug in Ferry: please report it */
} ferry_code;

#define FERRY_CODE_COUNT 15

/* Stable snake_case name of a code, e.g. "unknown_function". */
static inline const char* ferry_code_name(int code) {
  static const char* const names[FERRY_CODE_COUNT] = {
      "ok",           "unknown_function",  "bad_request",        "busy",
      "timeout",      "cancelled",         "worker_crashed",     "out_of_memory",
      "plugin_error", "permission_denied", "shutting_down",      "sandbox_violation",
      "call_depth_exceeded", "unsupported_version", "internal"};
  return (code >= 0 && code < FERRY_CODE_COUNT) ? names[code] : "unknown_code";
}

#ifdef __cplusplus
}
#endif

#endif /* FERRY_ERRORS_H */
