/**
 * udiRoot.conf as upstream ships it (udiRoot.conf.example.in, configure substitutions filled in
 * with Debian paths, long comment blocks shortened), plus the module lines doc/mpi/mpich_abi.rst
 * tells admins to add. Tests parse this to prove existing site files keep working.
 */
export const UPSTREAM_EXAMPLE = `# udiRoot.conf
#
# See https://github.com/NERSC/shifter/wiki/config-reference
#
# The file configuration format is a basic key=value, however space seperated
# strings can be used for multiple options. Multiple lines can be used if the
# final character on the line is '\\'. Items cannot be quoted to allow spaces
# within the configuration option.
#
#udiMount (required)
#
# Recommended value: /var/udiMount
udiMount=/var/udiMount

#loopMount (required)
loopMount=/var/udiLoopMount

#imagePath (required)
imagePath=/images

# udiRootPath (required)
udiRootPath=/opt/shifter/udiRoot/1.0

# sitePreMountHook
sitePreMountHook=/etc/shifter/premount.sh

# sitePostMountHook
sitePostMountHook=/etc/shifter/postmount.sh

#optUdiImage
optUdiImage=/usr/libexec/shifter/opt/udiImage
#
# Absolute path to the files you want copied into /etc for every container.
etcPath=/etc/shifter/shifter_etc_files

#allowLocalChroot (0 or 1)
#
# This must be enabled if the "ccm" emulation mode is desired. (ccm emulation is
# effectively done with shifter --image=local:/ within the SLURM integration.

#autoLoadKernelModule (0 or 1)
#
# Recommend 1 if you want to let shifter load them for you.

#mountUdiRootWritable (required)
#
# Recommended value: 1
mountUdiRootWritable=1

#maxGroupCount (required)
#
# Recommended value: 31
maxGroupCount=31

#modprobePath
modprobePath=/sbin/modprobe

#insmodPath (required)
insmodPath=/sbin/insmod

#cpPath (required)
cpPath=/bin/cp

#mvPath (required)
mvPath=/bin/mv

#chmodPath
chmodPath=/bin/chmod

#ddPath
ddPath=/bin/dd

#mkfsXfsPath
mkfsXfsPath=/sbin/mkfs.xfs

#rootfsType
#
# Recommended value: tmpfs
rootfsType=tmpfs

#gatewayTimeout (optional)
#
# Time in seconds to wait for the imagegw to respond before failing over to next
# (or failing).

#siteFs
siteFs=/home:/home

#siteEnv
siteEnv=SHIFTER_RUNTIME=1

#siteEnvAppend
siteEnvAppend=PATH=/opt/udiImage/bin

# siteEnvPrepend
#siteEnvPrepend=PATH=/opt/udiImage/bin

#imageGateway
imageGateway=http://imagegwapi:5000

#system (required)
system=mycluster

#defaultImageType (required)
defaultImageType=docker

#useOverlayFsMode (optional)
# Default is 0. Setting to 1 enables overlayfs functionality.
# useOverlayFsMode=0

module_mpich_siteEnvPrepend = LD_LIBRARY_PATH=/opt/udiImage/modules/mpich/lib64
module_mpich_copyPath = /usr/lib/shifter/modules/mpich
defaultModules = mpich
`;
