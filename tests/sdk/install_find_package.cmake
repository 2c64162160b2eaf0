# cmake -DBUILD_DIR=.. -DSOURCE_DIR=.. -DWORK_DIR=.. -DGENERATOR=.. -DMAKE_PROGRAM=..
#       -DCXX=.. -DNM=.. -P install_find_package.cmake
#
# Proves a plugin builds out of tree: installs the SDK component of BUILD_DIR
# into a fresh prefix, builds a copy of plugins/primes against it with
# find_package(Ferry), and checks primes.so exports exactly the ABI entry points.
function(run step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${step} failed (${rc}):\n${out}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()

set(prefix ${WORK_DIR}/prefix)
set(build ${WORK_DIR}/build)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

run("install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} --component sdk)
file(COPY ${SOURCE_DIR}/plugins/primes DESTINATION ${WORK_DIR})
run("configure" ${CMAKE_COMMAND} -S ${WORK_DIR}/primes -B ${build} -G ${GENERATOR}
    -DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM} -DCMAKE_CXX_COMPILER=${CXX}
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${prefix}
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
run("build" ${CMAKE_COMMAND} --build ${build})

set(plugin ${build}/primes.so)
if(NOT EXISTS ${plugin})
  message(FATAL_ERROR "the out-of-tree build produced no ${plugin}")
endif()
run("nm" ${NM} -D --defined-only ${plugin})
string(REPLACE "\n" ";" symbols "${out}")
list(FILTER symbols INCLUDE REGEX " [A-Za-z] ")
list(FILTER symbols EXCLUDE REGEX " A ")  # version-node names, not symbols
foreach(entry ferry_plugin_info ferry_plugin_init ferry_plugin_fini)
  if(NOT out MATCHES " T ${entry}\n")
    message(FATAL_ERROR "${plugin} does not export ${entry}:\n${out}")
  endif()
endforeach()
list(LENGTH symbols count)
if(NOT count EQUAL 3)
  message(FATAL_ERROR "${plugin} should export only the three entry points:\n${out}")
endif()
message("ok: ${plugin} built against ${prefix} and exports ferry_plugin_info")
