# runnel_isa_kernels(<target> SOURCES ...)
#
# Compiles every kernel source once per CPU ISA into an object library, with
# the ISA's flags and RUNNEL_ISA_<NAME> defined.  The sources use the
# namespace macro RUNNEL_ISA_NS, so the three compilations do not clash.
set(RUNNEL_ISA_LIST scalar avx2 avx512)
set(RUNNEL_ISA_FLAGS_scalar "")
set(RUNNEL_ISA_FLAGS_avx2 -mavx2 -mfma -mf16c -mbmi2)
set(RUNNEL_ISA_FLAGS_avx512 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 -mavx2 -mfma -mf16c -mbmi2)

function(runnel_isa_kernels target)
  cmake_parse_arguments(ARG "" "" "SOURCES" ${ARGN})
  set(objs)
  foreach(isa IN LISTS RUNNEL_ISA_LIST)
    add_library(${target}_${isa} OBJECT ${ARG_SOURCES})
    string(TOUPPER ${isa} ISA_UP)
    target_compile_definitions(${target}_${isa} PRIVATE RUNNEL_ISA_${ISA_UP}=1 RUNNEL_ISA_NS=${isa})
    target_compile_options(${target}_${isa} PRIVATE ${RUNNEL_ISA_FLAGS_${isa}}
                           $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>)
    target_include_directories(${target}_${isa} PRIVATE ${PROJECT_SOURCE_DIR}/kernels ${PROJECT_SOURCE_DIR}/include)
    target_link_libraries(${target}_${isa} PRIVATE runnel_warnings)
    list(APPEND objs $<TARGET_OBJECTS:${target}_${isa}>)
    # src/CMakeLists.txt folds these objects into the runnel library itself,
    # so that the installed archive is self-contained.
    set_property(GLOBAL APPEND PROPERTY RUNNEL_ISA_OBJECT_LIBRARIES ${target}_${isa})
  endforeach()
  set(${target}_OBJECTS ${objs} PARENT_SCOPE)
endfunction()
