/* Ferry plugin ABI, version 1.1.
 *
 * A plain C interface between ferryd (the host) and a plugin shared library.
 * A plugin exports two symbols, both resolved by these fixed names:
 *
 *   const ferry_plugin_info* ferry_plugin_info(void);
 *   int ferry_plugin_init(const ferry_host_api* api, ferry_registrar* reg);
 *
 * The host first calls ferry_plugin_info() and refuses the library when its
 * abi_major differs from FERRY_ABI_MAJOR. Minor versions only add functions at
 * the end of ferry_host_api: a plugin built against minor M may use a member
 * only when api->struct_size covers it (FERRY_HOST_API_HAS). Minor 1 added
 * ctx_call.
 *
 * Nothing here throws; exceptions never cross this boundary. C++ plugins
 * normally use <ferry/plugin.hpp>, which wraps all of this.
 */
#ifndef FERRY_PLUGIN_H
#define FERRY_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FERRY_ABI_MAJOR 1
#define FERRY_ABI_MINOR 1

#define FERRY_EXPORT __attribute__((visibility("default")))

/* Opaque: one per call; valid only while the call's function runs. */
typedef struct ferry_ctx ferry_ctx;
/* Opaque: valid only during ferry_plugin_init. */
typedef struct ferry_registrar ferry_registrar;

/* Log levels, as the host's logger understands them. */
enum {
  FERRY_LOG_TRACE = 0,
  FERRY_LOG_DEBUG = 1,
  FERRY_LOG_INFO = 2,
  FERRY_LOG_WARN = 3,
  FERRY_LOG_ERROR = 4,
};

/* A registered function: bytes in, bytes out.
 * `in` is valid for the duration of the call. The function reports its outcome
 * through api->set_result or api->set_error on `ctx`, and returns 0 after a
 * result or non-zero after an error. It must be synchronous: when it returns,
 * the call is over. It may be called concurrently from several threads. */
typedef int (*ferry_fn)(void* user, ferry_ctx* ctx, const uint8_t* in, size_t in_len);

/* The host's services. The table and its functions stay valid for as long as
 * the library is loaded; every function is thread-safe. */
typedef struct ferry_host_api {
  uint32_t abi_major;
  uint32_t abi_minor;
  size_t struct_size; /* sizeof(ferry_host_api) as the host built it */

  /* During ferry_plugin_init only: register `name` (short name, [A-Za-z0-9_],
   * the host prefixes "<plugin>.") to call `fn(user, ...)`. Returns 0, or a
   * ferry_code when the name is invalid or taken. */
  int (*register_fn)(ferry_registrar* reg, const char* name, ferry_fn fn, void* user);

  /* Log a message through the host's logger, tagged with the plugin name. */
  void (*log)(ferry_registrar* reg, int level, const char* msg, size_t len);

  /* Per call: the deadline in milliseconds of CLOCK_MONOTONIC, or 0 for none. */
  int64_t (*ctx_deadline_ms)(const ferry_ctx* ctx);
  /* Per call: non-zero once the call was cancelled or passed its deadline;
   * a long-running function should poll it and give up. */
  int (*ctx_cancelled)(const ferry_ctx* ctx);
  /* Per call: log through the host's logger, tagged with the function name. */
  void (*ctx_log)(ferry_ctx* ctx, int level, const char* msg, size_t len);
  /* Per call: set the reply payload (copied). The last set_* wins. */
  void (*set_result)(ferry_ctx* ctx, const uint8_t* data, size_t len);
  /* Per call: set an error reply with a ferry_code and a message (copied). */
  void (*set_error)(ferry_ctx* ctx, int code, const char* msg, size_t len);

  /* ---- minor 1 ---- */

  /* Per call: a nested call of the registered function `fn` ("plugin.function",
   * fn_len bytes, not NUL-terminated) with the request `in`, run to completion
   * before this returns. It runs inline on the calling thread (caller-runs:
   * it never waits for pool capacity, so nested calls cannot deadlock), one
   * level deeper than `ctx`, under ctx's deadline and cancellation. Returns
   * the callee's ferry_code (FERRY_OK = result) and calls on_reply(user, ...)
   * exactly once, before returning, with the result payload or the error
   * message; `data` is valid only during on_reply, which must not throw or
   * longjmp. Refusals, without running anything: unknown_function,
   * permission_denied (the function is out of reach from here: ferryd reaches
   * only thread-executor plugins, a worker only its own plugin),
   * call_depth_exceeded (deeper than server.max_call_depth), timeout (ctx's
   * deadline passed), cancelled. `ctx`'s own reply is not affected.
   * Present only when api->struct_size covers it. */
  int (*ctx_call)(ferry_ctx* ctx, const char* fn, size_t fn_len, const uint8_t* in, size_t in_len,
                  void (*on_reply)(void* user, const uint8_t* data, size_t len), void* user);
} ferry_host_api;

/* Non-zero when the host table `api` has `member` (added in some minor). */
#define FERRY_HOST_API_HAS(api, member) \
  ((api)->struct_size >= offsetof(ferry_host_api, member) + sizeof((api)->member))

/* Static description of a plugin; the pointer stays valid while loaded. */
typedef struct ferry_plugin_info {
  uint32_t abi_major;
  uint32_t abi_minor;
  const char* name;    /* plugin name: [A-Za-z0-9_]+, the prefix of its functions */
  const char* version; /* free-form, shown by `ferry list` */
} ferry_plugin_info;

typedef const ferry_plugin_info* (*ferry_plugin_info_fn)(void);
typedef int (*ferry_plugin_init_fn)(const ferry_host_api* api, ferry_registrar* reg);

#define FERRY_PLUGIN_INFO_SYMBOL "ferry_plugin_info"
#define FERRY_PLUGIN_INIT_SYMBOL "ferry_plugin_init"

#ifdef __cplusplus
}
#endif

#endif /* FERRY_PLUGIN_H */
