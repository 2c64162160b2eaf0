# Included by the install script of dist/CMakeLists.txt, with FERRY_* set:
# writes the config and the unit for the install-time CMAKE_INSTALL_PREFIX
# into FERRY_STAGING_DIR, then installs them (DESTDIR honoured by file(INSTALL)).

# A directory of the install, absolute (as the installed files must name it).
function(ferry_full_path dir out)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

ferry_full_path("${FERRY_BINDIR}" bindir)
ferry_full_path("${FERRY_SYSCONFDIR}/ferry" confdir)
ferry_full_path("${FERRY_PLUGINDIR}" plugindir)
ferry_full_path("${FERRY_UNITDIR}" unitdir)

# One staging directory per destination: installs into two prefixes at once
# (parallel tests) must not write each other's files.
string(MD5 destination "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}")
set(FERRY_STAGING_DIR "${FERRY_STAGING_DIR}/staged-${destination}")

# Replaces the one line of `text` that sets `key`; fails the install when
# config/server.toml no longer has exactly one such line.
function(ferry_set_key text_var key value)
  string(REGEX MATCHALL "\n${key} = [^\n]*" found "${${text_var}}")
  list(LENGTH found n)
  if(NOT n EQUAL 1)
    message(FATAL_ERROR "config/server.toml: expected one '${key} = ...' line, found ${n}")
  endif()
  string(REPLACE "${found}" "\n${key} = \"${value}\"" text "${${text_var}}")
  set(${text_var} "${text}" PARENT_SCOPE)
endfunction()

# etc/ferry/server.toml: config/server.toml, every comment kept, serving the
# installed plugins on the socket in the unit's RuntimeDirectory.
file(READ "${FERRY_SOURCE_DIR}/config/server.toml" config)
ferry_set_key(config socket_path "/run/ferry/ferry.sock")
ferry_set_key(config plugin_dir "${plugindir}")
file(WRITE "${FERRY_STAGING_DIR}/server.toml"
  "# Installed by `cmake --install` from Ferry's config/server.toml, with\n"
  "# socket_path in ferryd.service's RuntimeDirectory and plugin_dir where the\n"
  "# example plugins were installed.\n${config}")

# An existing config is the administrator's: never overwritten. A changed
# example lands beside it, as server.toml.new.
set(config_name server.toml)
if(EXISTS "$ENV{DESTDIR}${confdir}/server.toml")
  file(READ "$ENV{DESTDIR}${confdir}/server.toml" existing)
  file(READ "${FERRY_STAGING_DIR}/server.toml" staged)
  if(NOT existing STREQUAL staged)
    set(config_name server.toml.new)
    message(STATUS "Keeping ${confdir}/server.toml; the new example is ${confdir}/server.toml.new")
  endif()
endif()
file(INSTALL "${FERRY_STAGING_DIR}/server.toml" DESTINATION "${confdir}" RENAME "${config_name}")

# lib/systemd/system/ferryd.service.
set(FERRYD "${bindir}/ferryd")
set(FERRY_CONFIG "${confdir}/server.toml")
configure_file("${CMAKE_CURRENT_LIST_DIR}/ferryd.service.in" "${FERRY_STAGING_DIR}/ferryd.service" @ONLY)
file(INSTALL "${FERRY_STAGING_DIR}/ferryd.service" DESTINATION "${unitdir}")

file(REMOVE_RECURSE "${FERRY_STAGING_DIR}")  # installed: nothing to keep
