"""Helpers shared by the tests, one copy each (tests/ is on sys.path: `import support.models`).

- `models`: tiny random models from configs, `HostEvent` (torch.Event on CPU)
- `sources`: `ConstantSource`, a power source with a known energy; `t_of`, `energy_of`: a
  sample's time and counter, asserted set
- `runs`: `hand_run`, a run small enough to work out by hand
- `widget`: synthetic runs played in real time, the widget's traffic captured and decoded
- `notebook`: `FakeNotebook`, display messages applied as JupyterLab does, saved with nbformat
- `store_node`: the frontend's store evaluated in node on a run's snapshot or captured traffic
- `browser`: how Debian's Chromium is started; `lab`, `lab_page`: JupyterLab for the browser
  tests and Playwright helpers on its page
- `threads`: which threads a test left behind
"""
