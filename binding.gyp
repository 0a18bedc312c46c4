{
  "targets": [
    {
      "target_name": "pma",
      "sources": ["<!@(node -p \"(s=>s.sources.concat(s.cpu_only).join(' '))(require('./native/sources.json'))\")"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native"],
      "defines": ["<!@(node -p \"require('./native/sources.json').defines.join(' ')\")"],
      "cflags!": ["-fno-exceptions", "-O2", "-O3"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["<!@(node -p \"require('./native/sources.json').cflags.join(' ')\")"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "OTHER_CPLUSPLUSFLAGS": ["<!@(node -p \"require('./native/sources.json').cflags.join(' ')\")"]
      }
    }
  ]
}
