// Catch2 assertions on a Status: the status text becomes the failure message.
#pragma once

#include <catch2/catch.hpp>

#include "common/status.h"

// ASSERTION is REQUIRE or CHECK. The do/while scope ends the INFO capture right after the assertion.
#define HAMIRROR_STATUS_ASSERT(ASSERTION, expr)       \
  do {                                                \
    const ::hamirror::Status status_assert_ = (expr); \
    INFO(status_assert_.ToString());                  \
    ASSERTION(status_assert_.ok());                   \
  } while (false)

#define REQUIRE_OK(expr) HAMIRROR_STATUS_ASSERT(REQUIRE, expr)
#define CHECK_OK(expr) HAMIRROR_STATUS_ASSERT(CHECK, expr)
