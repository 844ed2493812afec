"""What the tests and the benches share: loopback servers, real Prometheus and promtool,
an OTLP receiver, scraping helpers and test data. Test files import from here, never from
each other."""
