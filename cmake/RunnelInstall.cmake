# Install rules: librunnel (with the CPU and CUDA kernels inside), the public
# headers and the generated version.hpp, the `runnel` command, the CMake
# package runnel::runnel (lib/cmake/runnel) and lib/pkgconfig/runnel.pc.
include(CMakePackageConfigHelpers)

set(RUNNEL_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/runnel)

install(TARGETS runnel EXPORT runnelTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS runnel_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/runnel
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.hpp")
install(FILES ${PROJECT_BINARY_DIR}/include/runnel/version.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/runnel)

install(EXPORT runnelTargets NAMESPACE runnel:: DESTINATION ${RUNNEL_INSTALL_CMAKEDIR})

# What the installed package must find again.  A static library carries its
# private dependencies into the user's link; a shared one only needs Threads.
get_target_property(RUNNEL_LIBRARY_TYPE runnel TYPE)
if(RUNNEL_LIBRARY_TYPE STREQUAL "STATIC_LIBRARY")
  set(RUNNEL_STATIC ON)
else()
  set(RUNNEL_STATIC OFF)
endif()
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/runnelConfig.cmake.in
  ${PROJECT_BINARY_DIR}/runnelConfig.cmake
  INSTALL_DESTINATION ${RUNNEL_INSTALL_CMAKEDIR})
# 0.x releases make no promise across minor versions.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/runnelConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/runnelConfig.cmake
              ${PROJECT_BINARY_DIR}/runnelConfigVersion.cmake
        DESTINATION ${RUNNEL_INSTALL_CMAKEDIR})

# pkg-config.  Libs.private / Requires.private hold what `--static` adds.
set(RUNNEL_PC_REQUIRES_PRIVATE "fmt libpcre2-8 libutf8proc")
set(RUNNEL_PC_LIBS_PRIVATE "")
if(RUNNEL_WITH_DNNL)
  # Debian's oneDNN ships no .pc file: link it by path of its directory.
  get_target_property(_dnnl_loc DNNL::dnnl LOCATION)
  get_filename_component(_dnnl_dir "${_dnnl_loc}" DIRECTORY)
  if(NOT _dnnl_dir IN_LIST CMAKE_CXX_IMPLICIT_LINK_DIRECTORIES)
    string(APPEND RUNNEL_PC_LIBS_PRIVATE " -L${_dnnl_dir}")
  endif()
  string(APPEND RUNNEL_PC_LIBS_PRIVATE " -ldnnl")
endif()
if(RUNNEL_HAVE_CUDA)
  string(APPEND RUNNEL_PC_LIBS_PRIVATE " -L${CUDAToolkit_LIBRARY_DIR} -lcublas -lcublasLt -lcudart")
endif()
# OpenMP runtime (libgomp with gcc) and threads.
string(APPEND RUNNEL_PC_LIBS_PRIVATE " ${OpenMP_CXX_FLAGS} -pthread")
string(STRIP "${RUNNEL_PC_LIBS_PRIVATE}" RUNNEL_PC_LIBS_PRIVATE)
if(NOT RUNNEL_STATIC)
  set(RUNNEL_PC_REQUIRES_PRIVATE "")
  set(RUNNEL_PC_LIBS_PRIVATE "-pthread")
endif()
# The prefix is found relative to the .pc file, so that `cmake --install
# --prefix P` (a prefix chosen after configuring) gives a working file.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(RUNNEL_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _up "/r/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/r")
  string(REGEX REPLACE "/$" "" _up "${_up}")
  set(RUNNEL_PC_PREFIX "\${pcfiledir}/${_up}")
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/runnel.pc.in ${PROJECT_BINARY_DIR}/runnel.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/runnel.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
