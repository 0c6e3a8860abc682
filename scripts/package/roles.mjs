// The three Debian packages, one per role of a host: what each installs and what it depends on.
// `programs` are bin/ wrappers: each becomes /usr/bin/<name>, running its entry point from the
// package's own copy of the application under /usr/lib/shifter/<app>/ (dist/, native/build/, the
// node_modules it imports, package.json). Paths on the left of `files` are inside the package.

export const MAINTAINER = 'shifter-ts developers <shifter-ts@localhost>';

/** shifter-runtime's bin/ wrappers (the launcher, a native program, is in `files`). */
const RUNTIME_PROGRAMS = [
  'shifterd',
  'shifter-job-check',
  'shifter-job-env',
  'shifterd-cache',
  'shifter-node-check',
  'prep-mpi',
  'prep-gpu',
];

/** @param {string} version the Debian version being built (shifter-runtime pins shifter-client to it). */
export function roles(version) {
  return [
    {
      name: 'shifter-client',
      app: 'client',
      programs: ['shifterimg'],
      native: [],
      files: {},
      conffiles: { 'etc/shifter/udiRoot.conf': 'packaging/etc/udiRoot.conf' },
      manPages: ['shifterimg', 'udiRoot.conf'],
      depends: ['nodejs (>= 20)', 'munge'],
      recommends: [],
      suggests: [],
      summary: 'containers for HPC: shifterimg and udiRoot.conf',
      description: [
        'shifterimg pulls, lists and looks up images through the shifter image gateway.',
        'Holds /etc/shifter/udiRoot.conf, the configuration every node program reads.',
      ],
    },
    {
      name: 'shifter-runtime',
      app: 'runtime',
      programs: RUNTIME_PROGRAMS,
      native: ['shifter-nshelper', 'shifter_native.node'],
      data: ['proto/shifterd.proto'],
      files: {
        'usr/bin/shifter': 'native:shifter',
        'usr/lib/shifter/shifter_spank.so': 'native:shifter_spank.so',
        'lib/systemd/system/shifterd.service': 'packaging/systemd/shifterd.service',
        'usr/lib/tmpfiles.d/shifter.conf': 'packaging/tmpfiles.d/shifter.conf',
      },
      conffiles: { 'etc/logrotate.d/shifterd': 'packaging/logrotate.d/shifterd' },
      // Every program's page, and shifter(1) for the launcher in /usr/bin.
      manPages: ['shifter', ...RUNTIME_PROGRAMS],
      depends: [
        `shifter-client (= ${version})`,
        'nodejs (>= 20)',
        'munge',
        'libfuse2',
        'util-linux',
        'libc6 (>= 2.34)',
        'libstdc++6',
      ],
      recommends: ['xfsprogs', 'patchelf'],
      suggests: ['slurm-wlm'],
      summary: 'containers for HPC: the node runtime (shifter, shifterd, Slurm plugin)',
      description: [
        'The unprivileged shifter launcher, the shifterd node daemon and its namespace helper,',
        'the Slurm SPANK plugin (/usr/lib/shifter/shifter_spank.so) and its job programs, the',
        "node's lazy image cache tool and the prep-mpi/prep-gpu module builders.",
      ],
    },
    {
      name: 'shifter-gateway',
      app: 'gateway',
      programs: ['shifter-gateway'],
      native: ['shifter_native.node'],
      files: { 'lib/systemd/system/shifter-gateway.service': 'packaging/systemd/shifter-gateway.service' },
      conffiles: {
        'etc/shifter/imagemanager.json': 'packaging/etc/imagemanager.json',
        'etc/logrotate.d/shifter-gateway': 'packaging/logrotate.d/shifter-gateway',
      },
      manPages: ['shifter-gateway', 'imagemanager.json'],
      depends: ['nodejs (>= 20)', 'munge', 'squashfs-tools-ng', 'zstd', 'adduser', 'libc6 (>= 2.34)', 'libstdc++6'],
      recommends: ['openssh-client'],
      suggests: [],
      summary: 'containers for HPC: the image gateway',
      description: [
        'The REST service that pulls images from registries, converts them to squashfs and',
        'publishes them to the imageDirs the nodes read; runs as the system user shifter.',
      ],
    },
  ];
}
