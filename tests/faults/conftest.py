"""The fault suite: each test does a fault for real (a kill, a signal, a torn file, a hostile
request, a hung model) on loopback, and checks that nothing acknowledged is lost and nothing is
let in. Every test here is bounded in time; the README's reliability table names them."""
