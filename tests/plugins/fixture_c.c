/* Fixture "cplugin": a plugin in plain C against <ferry/plugin.h> alone. It
 * declares the entry points as the header does (the struct tag and the
 * function ferry_plugin_info share a name, which C allows since ABI 1.2 made
 * the type `struct ferry_plugin_info`), and uses minor-2 members only when
 * the host table has them.
 *   cplugin.greet (raw)    -> "hello, " + the request bytes
 *   cplugin.settings (raw) -> its settings JSON, as init received it */
#include <stdio.h>
#include <string.h>

#include <ferry/plugin.h>

static const struct ferry_plugin_info info = {FERRY_ABI_MAJOR, FERRY_ABI_MINOR, "cplugin", "1.0.0"};
static const ferry_host_api* host;
static char settings[1024] = "{}";

const struct ferry_plugin_info* ferry_plugin_info(void) { return &info; }

static int greet(void* user, ferry_ctx* ctx, const uint8_t* in, size_t len) {
  char out[256];
  (void)user;
  int n = snprintf(out, sizeof out, "hello, %.*s", (int)(len < 200 ? len : 200), (const char*)in);
  host->set_result(ctx, (const uint8_t*)out, (size_t)n);
  return 0;
}

static int show_settings(void* user, ferry_ctx* ctx, const uint8_t* in, size_t len) {
  (void)user, (void)in, (void)len;
  host->set_result(ctx, (const uint8_t*)settings, strlen(settings));
  return 0;
}

int ferry_plugin_init(const ferry_host_api* api, ferry_registrar* reg) {
  host = api;
  if (FERRY_HOST_API_HAS(api, settings)) {
    size_t n = 0;
    const char* s = api->settings(reg, &n);
    if (n >= sizeof settings) {
      static const char why[] = "settings too large for this fixture";
      api->init_error(reg, why, sizeof why - 1);
      return FERRY_E_BAD_REQUEST;
    }
    memcpy(settings, s, n);
    settings[n] = '\0';
  }
  if (api->register_fn(reg, "greet", greet, NULL) != 0) return FERRY_E_INTERNAL;
  return api->register_fn(reg, "settings", show_settings, NULL);
}

void ferry_plugin_fini(void) {}
