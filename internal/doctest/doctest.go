// Package doctest holds the tests that keep the documentation true: every example
// directory under examples/ and every YAML block of README.md must be accepted by tlsd
// validate, and the README must document every configuration field and diagnostic code.
package doctest
