# ferry_add_plugin(<target> SOURCES <file>... [OUTPUT_DIR <dir>] [NO_VERSION_SCRIPT])
#
# Builds a Ferry plugin: a MODULE library named exactly <target>.so, linked to
# Ferry::sdk. Symbols are hidden and a version script exports only
# ferry_plugin_info, ferry_plugin_init and ferry_plugin_fini (NO_VERSION_SCRIPT: export whatever
# has default visibility). -fno-gnu-unique keeps the library unloadable, so a
# reloaded plugin really runs its new code. OUTPUT_DIR: where the .so goes.
include_guard(GLOBAL)

function(ferry_add_plugin target)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "NO_VERSION_SCRIPT" "OUTPUT_DIR" "SOURCES")
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "ferry_add_plugin(${target}): unknown arguments: ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "ferry_add_plugin(${target}): SOURCES is required")
  endif()

  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE Ferry::sdk)
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_compile_options(${target} PRIVATE
    -fvisibility=hidden
    $<$<COMPILE_LANGUAGE:CXX>:-fvisibility-inlines-hidden>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-fno-gnu-unique>)
  target_link_options(${target} PRIVATE -Wl,--no-undefined)

  if(NOT ARG_NO_VERSION_SCRIPT)
    set(map "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/ferry_plugin.map")
    target_link_options(${target} PRIVATE "LINKER:--version-script=${map}")
    set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS "${map}")
  endif()
  if(ARG_OUTPUT_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${ARG_OUTPUT_DIR}")
  endif()
endfunction()
