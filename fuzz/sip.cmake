# sip/: the SIP message parser, every typed header parser and the TCP stream framer.
# Seeds: fuzz/corpus/sip/ (the same real-shaped messages as the osip2 differential test, and the
# RFC 4475 torture messages of sip/tests/rfc4475 as rfc4475-*).
if(TARGET ve_sip_codec)
  ve_fuzz_target(sip_parse_fuzz ${CMAKE_CURRENT_SOURCE_DIR}/sip_parse_fuzz.cpp ve_sip_codec)
endif()
# SRST: the Path flow token (sip/upstream.cpp, with digest.cpp for the constant-time compare).
if(TARGET ve_sip_codec)
  find_package(OpenSSL REQUIRED)
  ve_fuzz_target(sip_flow_token_fuzz ${CMAKE_CURRENT_SOURCE_DIR}/sip_flow_token_fuzz.cpp ve_sip_codec ve_config
                 OpenSSL::Crypto fmt::fmt Boost::headers)
  target_sources(sip_flow_token_fuzz PRIVATE ${PROJECT_SOURCE_DIR}/sip/upstream.cpp ${PROJECT_SOURCE_DIR}/sip/digest.cpp)
endif()
